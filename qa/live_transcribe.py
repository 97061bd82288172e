"""Whisper on one live utterance, tuned for lag: the live text is a preview, the post-call transcript the record.

Where the time went before (Whisper base int8 on one CPU thread, a 2-4 s
utterance): the encoder ran over a full 30 s window, about 2 CPU-s of the
2.5; greedy decoding 0.4, word alignment 0.2, language detection 0.1.
So the live path, unlike the post-call one (qa.transcribe):

- runs on a model of its own (load_live_model, live.threads threads, 2 by
  default): it never waits for a post-call batch, and an utterance is not
  left to one thread;
- encodes a window fitted to the utterance: live.window_seconds (10 s by
  default) or the utterance plus 5 s rounded up to 5 s, never over Whisper's
  30 s. Whisper was trained on 30 s windows, so a shorter one costs a little
  accuracy (14 espeak-ng sentences: 17 word errors of 126 against 15 with
  30 s) for a fifth of the encoder time; live.window_seconds = 30 keeps
  Whisper's own window;
- decodes greedily without timestamp tokens and without word alignment: an
  utterance is one speaker's, so its segment takes the utterance's times;
- detects the language once per call (LiveLanguage) instead of per utterance.
"""

from __future__ import annotations

import dataclasses
import math
import os
from types import SimpleNamespace

import numpy as np

from qa.packing import ChannelSpeech, Window, pack_windows
from qa.segments import TranscriptSegment
from qa.transcribe import TranscribeOptions, _credible, _decode, _features, is_repetition_loop

FRAMES_PER_S = 100  # Whisper's log-mel frames
FULL_FRAMES = 3000  # its 30 s window
MARGIN_S = 5.0  # room after the speech in a fitted window
MIN_DETECT_SPEECH_S = 2.0  # the call's language is fixed by an utterance at least this long (short ones mislead)


def load_live_model(settings: SimpleNamespace, threads: int):
    """A model instance for the live path alone (weights loaded a second time: about 80 MB for base int8)."""
    from faster_whisper import WhisperModel

    from qa.model_files import resolve_model

    qa = settings.qa
    return WhisperModel(
        resolve_model(qa.model, settings.data_dir),
        device=qa.device,
        compute_type=qa.compute_type,
        cpu_threads=threads or (os.cpu_count() or 1),  # 0: all cores
        num_workers=1,
        local_files_only=not qa.allow_download,
    )


def live_transcribe_options(options: TranscribeOptions, language: str) -> TranscribeOptions:
    """The post-call options with greedy decoding and the live language."""
    return dataclasses.replace(options, beam_size=1, language=language)


def window_frames(audio_frames: int, window_s: float) -> int:
    """The encoder's input length for audio_frames of audio: the audio plus MARGIN_S rounded up to MARGIN_S,
    at least window_s, never past Whisper's 30 s. Whisper was trained on 30 s windows, so a shorter one
    costs a little accuracy for a proportionally shorter encoder pass (the module doc)."""
    fitted = math.ceil((audio_frames / FRAMES_PER_S + MARGIN_S) / MARGIN_S) * MARGIN_S
    return min(FULL_FRAMES, int(max(window_s, fitted) * FRAMES_PER_S))


class LiveLanguage:
    """One call's language: the configured one, or the first one Whisper hears in a long enough utterance."""

    def __init__(self, configured: str) -> None:
        self.known = None if configured == "auto" else configured

    def pick(self, model, encoded, speech_s: float) -> str:
        if not model.model.is_multilingual:
            return "en"
        if self.known is not None:
            return self.known
        ranked = model.model.detect_language(encoded)[0]
        language = ranked[0][0][2:-2]  # "<|en|>" -> "en"
        if speech_s >= MIN_DETECT_SPEECH_S:
            self.known = language
        return language


def _segment(window: Window, origin_s: float, text: str, confidence: float, speaker: str):
    start = origin_s + window.placed[0].call_start
    last = window.placed[-1]
    return TranscriptSegment(start, origin_s + last.call_start + (last.end - last.start), speaker, text, confidence)


def transcribe_live(model, utterance, options: TranscribeOptions, window_s: float,
                    language: LiveLanguage) -> list[TranscriptSegment]:
    """The utterance's text as one segment per window (one, for utterances up to 28 s), in tap time."""
    from faster_whisper.tokenizer import Tokenizer

    segments = []
    for window in pack_windows([ChannelSpeech(utterance.speaker, utterance.samples, utterance.spans)],
                               options.padding_s):
        mel, frames = _features(model, window)
        encoded = model.encode(np.ascontiguousarray(mel[None, :, : window_frames(frames, window_s)]))
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                              language=language.pick(model, encoded, window.speech_s))
        decoded = _decode(model, encoded, tokenizer, options)[0]
        if not _credible(decoded, options) or is_repetition_loop(decoded.text, options.max_repeats):
            continue
        confidence = float(np.exp(decoded.avg_logprob))
        segments.append(_segment(window, utterance.origin_s, decoded.text, confidence, utterance.speaker))
    return segments
