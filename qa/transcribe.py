"""Transcription of a call's speech with faster-whisper, every word attributed to its speaker.

Only speech is transcribed: qa.packing fills 30 s windows with both
channels' padded VAD spans, so Whisper gets no silence to invent text on and
a call costs as few encoder passes as its speech needs. The windows of a
call are encoded and decoded in batches (on a CPU 4 windows decode in about
1.5 times the wall time of one: a decoding step is latency-bound), two
batches at once on two one-thread CTranslate2 workers (see load_whisper),
an odd last window on an instance with all the threads, without
timestamp tokens; the words are then aligned to the audio (cross-attention
alignment, what faster-whisper's word_timestamps does) and each word goes
back to the piece of speech it was said in, which gives its speaker and its
call time. The language, when "auto", is read off the encoder output of the
first round's fullest window: no encoder pass of its own, one decoder step.

faster-whisper's lower layer (WhisperModel.encode, find_alignment and the
CTranslate2 model under it) is used directly because its transcribe() runs
one window at a time, re-encodes from wherever decoding stopped and spends a
separate encoder pass on language detection; the guards are faster-whisper's
own rules (temperature fallback, no-speech and log-prob thresholds,
compression ratio) plus ours. This runs in the worker process, never on an
event loop.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from qa.audio import to_float
from qa.packing import ChannelSpeech, Window, pack_windows, region_of, to_call_time
from qa.segments import TranscriptSegment

__all__ = ["ChannelSpeech", "TranscribeOptions", "load_whisper", "transcribe_call", "is_repetition_loop"]

_BATCH = 8  # most windows encoded and decoded together (memory grows with it)
_LANES = 2  # most batches of one call run at once, one per CTranslate2 worker (see load_whisper)
_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's fallback ladder
_BEST_OF = 5  # hypotheses sampled at a temperature above 0, as faster-whisper does
_PREPEND_PUNCTUATION = "\"'“¿([{-"
_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class TranscribeOptions:
    language: str = "auto"  # "zh", "en" or "auto" (detected once per call)
    beam_size: int = 1
    padding_s: float = 0.2
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    min_log_prob: float = -1.5  # below this a window is dropped even when Whisper thought it was speech
    compression_ratio_threshold: float = 2.4
    max_repeats: int = 3  # a phrase said this many times in a row is a decoding loop


def load_whisper(model_path: str, device: str, compute_type: str, threads: int, local_only: bool,
                 num_workers: int = 1):
    """Load the model once per worker process (seconds; keep it for every job).

    On a CPU the threads are split into up to _LANES workers of their own
    (CTranslate2 replicas sharing the weights), each running one batch of a
    call's windows: a one-thread worker never waits at a sync point for a
    sibling thread, which a decoding step of small matrices does many times
    per token. Measured on the shared 2-core machine (load average 20-30),
    two one-thread workers took the same CPU time as one two-thread worker
    for the same windows but 45% less wall time. num_workers - 1 replicas more
    let other threads run the model beside a post-call job (the live path
    loads its own instance instead: qa.live_transcribe).
    """
    from faster_whisper import WhisperModel

    threads = threads or (os.cpu_count() or 1)
    lanes = min(_LANES, threads) if device == "cpu" else 1

    def whisper(cpu_threads: int, workers: int) -> WhisperModel:
        return WhisperModel(model_path, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                            num_workers=workers, local_files_only=local_only)

    model = whisper(max(1, threads // lanes), lanes + max(0, num_workers - 1))
    # A round of one batch (a call's odd last window) would leave every lane but one idle: it runs on an
    # instance with all the threads instead (an encoder pass of base in 0.6 of the time of one thread).
    model.solo = whisper(threads, 1) if lanes > 1 else model
    return model


_TOKEN = re.compile(r"[\u3400-\u9fff]|[^\W_]+", re.UNICODE)


def is_repetition_loop(text: str, max_repeats: int) -> bool:
    """True when some phrase of 1..8 tokens occurs max_repeats times back to back."""
    tokens = [t.lower() for t in _TOKEN.findall(text)]
    for n in range(1, 9):
        needed = max_repeats + (1 if n == 1 else 0)  # single words repeat in real speech ("no, no, no")
        for i in range(len(tokens) - n * needed + 1):
            phrase = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == phrase for k in range(1, needed)):
                return True
    return False


@dataclass(frozen=True)
class _Decoded:
    """One window's decoding, with the figures faster-whisper's guards read (all per window)."""

    tokens: list[int]
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


def _credible(decoded: _Decoded, options: TranscribeOptions) -> bool:
    """The guards against text invented on noise, music or silence that slipped past VAD."""
    if not _TOKEN.search(decoded.text):
        return False
    if decoded.no_speech_prob > options.no_speech_threshold and decoded.avg_logprob < options.log_prob_threshold:
        return False
    if decoded.avg_logprob < options.min_log_prob:
        return False
    return decoded.compression_ratio <= options.compression_ratio_threshold


def _needs_fallback(decoded: _Decoded, options: TranscribeOptions) -> bool:
    """faster-whisper's rule: decode again, hotter, when the text loops or is unlikely, unless it is silence."""
    unlikely = decoded.avg_logprob < options.log_prob_threshold
    silence = unlikely and decoded.no_speech_prob > options.no_speech_threshold
    return (decoded.compression_ratio > options.compression_ratio_threshold or unlikely) and not silence


def _rows(encoded, rows: list[int]):
    """The encoder output of some windows of a batch (for the ones decoded again)."""
    import ctranslate2

    if len(rows) == encoded.shape[0]:
        return encoded
    array = np.asarray(encoded.to_device(ctranslate2.Device.cpu))
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[rows]))


def _generate(model, encoded, prompt: list[int], tokenizer, options: TranscribeOptions, temperature: float):
    from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

    if temperature == 0:
        sampling = {"beam_size": options.beam_size}
    else:
        sampling = {"beam_size": 1, "num_hypotheses": _BEST_OF, "sampling_topk": 0, "sampling_temperature": temperature}
    results = model.model.generate(
        encoded,
        [prompt] * encoded.shape[0],
        max_length=model.max_length,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        **sampling,
    )
    decoded = []
    for result in results:
        tokens = result.sequences_ids[0]
        text = tokenizer.decode(tokens).strip()
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # CTranslate2 gives the mean per token
        decoded.append(_Decoded(tokens, text, avg_logprob, result.no_speech_prob, get_compression_ratio(text)))
    return decoded


def _decode(model, encoded, tokenizer, options: TranscribeOptions) -> list[_Decoded]:
    """Greedy (or beam) decoding of every window, hotter again for those that fail, as faster-whisper does."""
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    attempts: list[list[_Decoded]] = [[] for _ in range(encoded.shape[0])]
    pending = list(range(encoded.shape[0]))
    for temperature in _TEMPERATURES:
        if not pending:
            break
        results = _generate(model, _rows(encoded, pending), prompt, tokenizer, options, temperature)
        for i, decoded in zip(pending, results, strict=True):
            attempts[i].append(decoded)
        pending = [i for i in pending if _needs_fallback(attempts[i][-1], options)]
    # A window that failed at every temperature keeps its most likely decoding that does not loop.
    return [
        max(tried, key=lambda d: (d.compression_ratio <= options.compression_ratio_threshold, d.avg_logprob))
        if i in pending
        else tried[-1]
        for i, tried in enumerate(attempts)
    ]


def _tokenizer(model, encoded: list, batches: list[list[Window]], options: TranscribeOptions):
    """The configured language, or the one Whisper hears in the first round's window with the most speech.

    Both parties of a call speak one language. Detection is a decoder pass
    over a window's encoder output (about 0.15 CPU-s for base), so it runs on
    one window, not all of them: the fullest window of the first round holds
    up to 30 s of the call's speech, which is a steadier vote than a short one.
    """
    from faster_whisper.tokenizer import Tokenizer

    language = options.language
    if not model.model.is_multilingual:
        language = "en"
    elif language == "auto":
        b, i = max(
            ((b, i) for b, batch in enumerate(batches) for i in range(len(batch))),
            key=lambda bi: batches[bi[0]][bi[1]].speech_s,
        )
        # On a GPU the batch stays on the device (a slice would go through host memory); the row is read off.
        sliced = model.model.device == "cpu"
        ranked = model.model.detect_language(_rows(encoded[b], [i]) if sliced else encoded[b])[0 if sliced else i]
        language = ranked[0][0][2:-2]
    return Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)


def _features(model, window: Window) -> tuple[np.ndarray, int]:
    """The window's log-mel features padded to 30 s, and how many frames hold audio."""
    from faster_whisper.audio import pad_or_trim

    mel = model.feature_extractor(to_float(window.samples))[..., :-1]
    return pad_or_trim(mel), mel.shape[-1]


def _aligned_words(model, tokenizer, encoded, rows: list[int], decoded: list[_Decoded], frames: list[int]):
    """Per window row: its words with start and end in window seconds, punctuation joined to its word."""
    from faster_whisper.transcribe import merge_punctuations

    text_tokens = [[t for t in decoded[i].tokens if t < tokenizer.eot] for i in rows]
    alignments = model.find_alignment(tokenizer, text_tokens, _rows(encoded, rows), [frames[i] for i in rows])
    words = {}
    for i, alignment in zip(rows, alignments, strict=True):
        merge_punctuations(alignment, _PREPEND_PUNCTUATION, _APPEND_PUNCTUATION)
        words[i] = [w for w in alignment if w["word"]]
    return words


def _segment(words: list[dict], placed, options: TranscribeOptions) -> TranscriptSegment | None:
    text = "".join(w["word"] for w in words).strip()
    if not _TOKEN.search(text) or is_repetition_loop(text, options.max_repeats):
        return None
    start, end = to_call_time(words[0]["start"], placed), to_call_time(words[-1]["end"], placed)
    confidence = sum(w["probability"] for w in words) / len(words)
    return TranscriptSegment(start, max(start, end), placed.speaker, text, float(confidence))


def _window_segments(window: Window, words: list[dict], options: TranscribeOptions) -> list[TranscriptSegment]:
    """One segment per piece of speech that holds words; each word goes to the piece it was said in."""
    groups: list[tuple[int, list[dict]]] = []
    for word in words:
        index = region_of((word["start"] + word["end"]) / 2, window.placed)
        if groups and groups[-1][0] == index:
            groups[-1][1].append(word)
        else:
            groups.append((index, [word]))
    segments = (_segment(group, window.placed[index], options) for index, group in groups)
    return [s for s in segments if s is not None]


def _without_echoes(segments: list[TranscriptSegment]) -> list[TranscriptSegment]:
    """Drop a segment that repeats its speaker's previous one word for word (a hallucinated echo)."""
    previous: dict[str, str] = {}
    kept = []
    for segment in segments:
        if previous.get(segment.speaker) != segment.text:
            kept.append(segment)
        previous[segment.speaker] = segment.text
    return kept


def _rounds(windows: list[Window], lanes: int) -> list[list[list[Window]]]:
    """Rounds of `lanes` batches of at most _BATCH windows, shared out evenly; the windows that do not
    share out (len % lanes, a call's leftover) make a last round of one batch, which transcribe_call
    gives the instance with all the threads: 3 -> [[1], [1]], [[1]]; 11 -> [[5], [5]], [[1]].
    """
    even = len(windows) - len(windows) % lanes
    main, rest = windows[:even], windows[even:]
    rounds = []
    if main:
        size = -(-len(main) // (lanes * -(-len(main) // (lanes * _BATCH))))
        batches = [main[i : i + size] for i in range(0, len(main), size)]
        rounds = [batches[i : i + lanes] for i in range(0, len(batches), lanes)]
    return rounds + ([[rest]] if rest else [])


def _encode(model, batch: list[Window]):
    features = [_features(model, window) for window in batch]
    mels = np.stack([mel for mel, _ in features])
    return model.encode(np.ascontiguousarray(mels)), [frames for _, frames in features]


def _batch_segments(model, batch: list[Window], encoded, frames, tokenizer, options) -> list[TranscriptSegment]:
    decoded = _decode(model, encoded, tokenizer, options)
    rows = [i for i, d in enumerate(decoded) if _credible(d, options)]
    if not rows:
        return []
    words = _aligned_words(model, tokenizer, encoded, rows, decoded, frames)
    return [segment for i in rows for segment in _window_segments(batch[i], words[i], options)]


def transcribe_call(model, channels: list[ChannelSpeech], options: TranscribeOptions) -> list[TranscriptSegment]:
    """All channels' segments in call order (by start)."""
    windows = pack_windows(channels, options.padding_s)
    if not windows:
        return []
    lanes = model.model.num_workers
    tokenizer, segments = None, []
    with ThreadPoolExecutor(lanes) as pool:  # CTranslate2 lets go of the GIL: the lanes run in parallel
        for batches in _rounds(windows, lanes):
            runner = model if len(batches) > 1 else getattr(model, "solo", model)
            encoded, frames = zip(*pool.map(_encode, repeat(runner), batches), strict=True)
            tokenizer = tokenizer or _tokenizer(runner, list(encoded), batches, options)
            jobs = (repeat(runner), batches, encoded, frames, repeat(tokenizer), repeat(options))
            for batch_segments in pool.map(_batch_segments, *jobs):
                segments += batch_segments
    return _without_echoes(sorted(segments, key=lambda s: s.start))  # first-fit windows are not in call order
