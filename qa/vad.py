"""Voice activity per channel with webrtcvad: 16-bit PCM frames in, speech spans out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from qa.audio import SAMPLE_RATE
from qa.segments import Span


@dataclass(frozen=True)
class VadOptions:
    aggressiveness: int = 3  # 0..3; 3 rejects most line noise
    frame_ms: int = 30  # webrtcvad takes 10, 20 or 30 ms frames
    merge_gap_ms: int = 300  # pauses inside one utterance shorter than this do not split it
    min_speech_ms: int = 150  # shorter bursts are clicks and breaths, not speech
    max_flatness: float = 0.3  # spans whose spectrum is flatter than this are noise (see spectral_flatness)


def _frame_flags(samples: np.ndarray, options: VadOptions) -> list[bool]:
    vad = webrtcvad.Vad(options.aggressiveness)
    step = SAMPLE_RATE * options.frame_ms // 1000
    pcm = samples.astype("<i2").tobytes()
    n = len(samples) // step
    return [vad.is_speech(pcm[i * step * 2 : (i + 1) * step * 2], SAMPLE_RATE) for i in range(n)]


def _runs(flags: list[bool], frame_s: float) -> list[Span]:
    spans, start = [], None
    for i, speech in enumerate(flags + [False]):
        if speech and start is None:
            start = i
        elif not speech and start is not None:
            spans.append(Span(start * frame_s, i * frame_s))
            start = None
    return spans


def _merge_close(spans: list[Span], gap_s: float) -> list[Span]:
    merged: list[Span] = []
    for span in spans:
        if merged and span.start - merged[-1].end <= gap_s:
            merged[-1] = Span(merged[-1].start, span.end)
        else:
            merged.append(span)
    return merged


def spectral_flatness(samples: np.ndarray, n: int = 512) -> float:
    """Median over 32 ms frames of geometric / arithmetic mean of the power spectrum.

    webrtcvad takes loud broadband noise (a hissing line, a fan next to the
    headset) for speech. Voiced speech has a peaked spectrum (about 0.005
    here); white noise is flat (about 0.56). Without this gate Whisper spends
    a minute of temperature fallbacks on 20 s of hiss before the guards drop
    what it wrote.
    """
    usable = len(samples) // n * n
    if usable == 0:
        return 0.0
    frames = samples[:usable].astype(np.float32).reshape(-1, n) * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10
    return float(np.median(np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)))


def speech_spans(samples: np.ndarray, options: VadOptions) -> list[Span]:
    """Speech spans of one channel (int16 at SAMPLE_RATE), without padding."""
    return spans_from_flags(samples, _frame_flags(samples, options), options)


def spans_from_flags(samples: np.ndarray, flags: list[bool], options: VadOptions) -> list[Span]:
    """Speech spans from webrtcvad's per-frame flags over samples: close runs merged, clicks and hiss dropped.

    The live path (qa.live) computes the flags frame by frame as audio arrives and calls this on
    what it holds, so it cuts utterances by the same rules as the post-call analysis."""
    frame_s = options.frame_ms / 1000
    spans = _merge_close(_runs(flags, frame_s), options.merge_gap_ms / 1000)
    return [
        s
        for s in spans
        if s.duration >= options.min_speech_ms / 1000
        and spectral_flatness(samples[int(s.start * SAMPLE_RATE) : int(s.end * SAMPLE_RATE)]) <= options.max_flatness
    ]


def padded(spans: list[Span], padding_s: float, duration_s: float) -> list[Span]:
    """Spans widened by padding_s (so word onsets are not clipped for the recogniser), overlaps joined."""
    widened = [Span(max(0.0, s.start - padding_s), min(duration_s, s.end + padding_s)) for s in spans]
    return _merge_close(widened, 0.0)
