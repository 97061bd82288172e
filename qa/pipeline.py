"""A recording in, transcript + metrics + scores out: the stages wired together.

`analyse` is the expensive part (voice activity and transcription); its result
is all a scorecard needs, so a call can be scored again under a changed
scorecard without transcribing again.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace

from qa.audio import Recording
from qa.metrics import TalkMetrics, mono_metrics, talk_metrics, union
from qa.model_files import resolve_model
from qa.packing import ChannelSpeech
from qa.scorecard import Scorecard
from qa.scoring import Call, Score, score_call
from qa.segments import AGENT, CUSTOMER, UNKNOWN, Span, TranscriptSegment
from qa.transcribe import TranscribeOptions, load_whisper, transcribe_call
from qa.transcript import merge
from qa.vad import VadOptions, speech_spans
from telesales.settings import SettingsError


@dataclass(frozen=True)
class QaOptions:
    vad: VadOptions
    transcribe: TranscribeOptions
    interruption_min_overlap_s: float


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise SettingsError(f"qa.{key}: {message}")


def qa_options(qa: SimpleNamespace) -> QaOptions:
    """Options from settings.qa, checked (a bad value stops start-up naming the key)."""
    _require(qa.vad_aggressiveness in (0, 1, 2, 3), "vad_aggressiveness", "must be 0, 1, 2 or 3")
    _require(qa.vad_frame_ms in (10, 20, 30), "vad_frame_ms", "must be 10, 20 or 30")
    _require(0 < qa.vad_max_flatness <= 1, "vad_max_flatness", "must be above 0 and at most 1")
    _require(qa.language in ("zh", "en", "auto"), "language", "must be zh, en or auto")
    _require(qa.beam_size >= 1, "beam_size", "must be 1 or more")
    _require(qa.threads >= 0, "threads", "must be 0 (all cores) or more")
    _require(0 <= qa.nice <= 19, "nice", "must be 0 (same priority) to 19 (lowest)")
    _require(qa.max_repeats >= 2, "max_repeats", "must be 2 or more")
    return QaOptions(
        vad=VadOptions(
            qa.vad_aggressiveness, qa.vad_frame_ms, qa.vad_merge_gap_ms, qa.vad_min_speech_ms, qa.vad_max_flatness
        ),
        transcribe=TranscribeOptions(
            language=qa.language,
            beam_size=qa.beam_size,
            padding_s=qa.vad_padding_ms / 1000,
            no_speech_threshold=qa.no_speech_threshold,
            log_prob_threshold=qa.log_prob_threshold,
            min_log_prob=qa.min_log_prob,
            compression_ratio_threshold=qa.compression_ratio_threshold,
            max_repeats=qa.max_repeats,
        ),
        interruption_min_overlap_s=qa.interruption_min_overlap_s,
    )


def load_model(settings: SimpleNamespace, num_workers: int = 1):
    """The Whisper model named by settings.qa (seconds to load: once per worker process).

    On Linux its inference threads run qa.nice below the process (nice
    values add up): CTranslate2 starts them while the model loads, and a
    thread inherits its creator's nice value, so the model is loaded on a
    throwaway thread that lowers its own priority first (a thread may lower
    its priority but not raise it back). Nothing else in the process is
    affected: the live transcript's model (qa.live_transcribe) and the seats
    keep theirs.
    """
    qa = settings.qa
    _require(0 <= qa.nice <= 19, "nice", "must be 0 (same priority) to 19 (lowest)")
    path = resolve_model(qa.model, settings.data_dir)

    def load():
        if sys.platform == "linux":  # elsewhere a thread id given as a process id would renice another process
            me = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + qa.nice))
        return load_whisper(path, qa.device, qa.compute_type, qa.threads, local_only=not qa.allow_download,
                            num_workers=num_workers)

    with ThreadPoolExecutor(1, thread_name_prefix="whisper-load") as loader:
        return loader.submit(load).result()


@dataclass(frozen=True)
class Analysis:
    duration_s: float
    spans: dict[str, list[Span]]  # per speaker
    transcript: tuple[TranscriptSegment, ...]
    metrics: TalkMetrics
    warnings: tuple[str, ...]


def analyse(recording: Recording, model, options: QaOptions) -> Analysis:
    speakers = (AGENT, CUSTOMER) if recording.is_stereo else (UNKNOWN,)
    channels = [
        ChannelSpeech(speaker, samples, speech_spans(samples, options.vad))
        for speaker, samples in zip(speakers, recording.channels, strict=True)
    ]
    transcript = merge(transcribe_call(model, channels, options.transcribe))
    spans = {ch.speaker: ch.spans for ch in channels}
    warnings = []
    if recording.is_stereo:
        metrics = talk_metrics(spans[AGENT], spans[CUSTOMER], list(transcript), options.interruption_min_overlap_s)
    else:
        metrics = mono_metrics(spans[UNKNOWN])
        warnings.append("mono recording: both parties are one unknown speaker; per-party metrics are not measured")
    return Analysis(recording.duration_s, spans, transcript, metrics, tuple(warnings))


def score(analysis: Analysis, scorecard: Scorecard, disposition: str | None) -> Score:
    speech = union(*analysis.spans.values())
    call = Call(
        transcript=analysis.transcript,
        metrics=analysis.metrics,
        speech_start=speech[0].start if speech and analysis.transcript else None,
        speech_end=speech[-1].end if speech and analysis.transcript else None,
        disposition=disposition,
    )
    return score_call(scorecard, call)


def result_json(analysis: Analysis, result: Score) -> dict:
    return {
        "duration_s": round(analysis.duration_s, 2),
        "metrics": analysis.metrics.to_json(),
        "transcript": [
            {"speaker": s.speaker, "start": round(s.start, 2), "end": round(s.end, 2), "text": s.text}
            for s in analysis.transcript
        ],
        "checks": [c.to_json() for c in result.checks],
        "categories": result.categories,
        "score": result.score,
    }
