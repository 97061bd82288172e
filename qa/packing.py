"""A call's speech packed into Whisper windows of at most 30 s, and times mapped back to the call.

Whisper's encoder costs the same for every 30 s window whatever it holds
(about 2 CPU-seconds for base in int8, more than decoding the window), so a
call costs what its number of windows costs. Only the padded VAD spans go in,
back to back: the padding already leaves some 0.4 s of the channel's own
silence between two utterances. The agent's spans come first, then the
customer's, so a window changes speaker at most once; there the pieces are
SPEAKER_GAP_S apart, wide enough that a word timestamp off by half a second
still lands on the right speaker. Filling windows with both parties' speech
takes about a third fewer windows than packing each channel on its own
(a 1-minute call: 2 windows instead of 3).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from qa.audio import SAMPLE_RATE
from qa.segments import Span
from qa.vad import padded

WINDOW_S = 30.0  # Whisper's input length
SPEAKER_GAP_S = 1.0
MAX_PIECE_S = 28.0  # an utterance longer than this (no pause in it) is cut at its quietest moment
_CUT_SEARCH_S = 8.0  # how far back from MAX_PIECE_S the cut may go
_FRAME = SAMPLE_RATE * 30 // 1000


@dataclass(frozen=True)
class ChannelSpeech:
    speaker: str
    samples: np.ndarray  # int16 at SAMPLE_RATE
    spans: list[Span]


@dataclass(frozen=True)
class Placed:
    """Where a piece of a channel's speech sits in its window, and where it was said in the call."""

    start: float  # seconds from the window start
    end: float
    call_start: float
    speaker: str


@dataclass(frozen=True)
class Window:
    samples: np.ndarray  # int16, at most WINDOW_S long
    placed: tuple[Placed, ...]

    @property
    def speech_s(self) -> float:
        return sum(p.end - p.start for p in self.placed)


@dataclass(frozen=True)
class _Piece:
    speaker: str
    call_start: float
    samples: np.ndarray


def _cut_point(samples: np.ndarray) -> int:
    """Sample index of the quietest 30 ms frame in the last _CUT_SEARCH_S before MAX_PIECE_S."""
    lo, hi = int((MAX_PIECE_S - _CUT_SEARCH_S) * SAMPLE_RATE), int(MAX_PIECE_S * SAMPLE_RATE)
    frames = samples[lo:hi][: (hi - lo) // _FRAME * _FRAME].astype(np.float32).reshape(-1, _FRAME)
    return lo + int(np.argmin(np.mean(frames**2, axis=1))) * _FRAME + _FRAME // 2


def _pieces(channel: ChannelSpeech, padding_s: float) -> list[_Piece]:
    pieces = []
    for span in padded(channel.spans, padding_s, len(channel.samples) / SAMPLE_RATE):
        start = int(span.start * SAMPLE_RATE)
        samples = channel.samples[start : int(span.end * SAMPLE_RATE)]
        while len(samples) > MAX_PIECE_S * SAMPLE_RATE:
            cut = _cut_point(samples)
            pieces.append(_Piece(channel.speaker, start / SAMPLE_RATE, samples[:cut]))
            start, samples = start + cut, samples[cut:]
        pieces.append(_Piece(channel.speaker, start / SAMPLE_RATE, samples))
    return pieces


def _window(pieces: list[_Piece]) -> Window:
    parts, placed, cursor = [], [], 0
    for i, piece in enumerate(pieces):
        if i and piece.speaker != pieces[i - 1].speaker:
            parts.append(np.zeros(int(SPEAKER_GAP_S * SAMPLE_RATE), np.int16))
            cursor += len(parts[-1])
        parts.append(piece.samples)
        end = cursor + len(piece.samples)
        placed.append(Placed(cursor / SAMPLE_RATE, end / SAMPLE_RATE, piece.call_start, piece.speaker))
        cursor = end
    return Window(np.concatenate(parts), tuple(placed))


def pack_windows(channels: list[ChannelSpeech], padding_s: float) -> list[Window]:
    """The channels' padded speech spans, channel after channel, in windows of at most WINDOW_S.

    First fit: a window takes, in order, every remaining piece that still
    fits, so a piece too long for the room left waits for the next window
    while shorter later ones fill it. Every window costs a full encoder pass
    however little it holds (the 5-minute bench call: 6 windows instead of
    7), and what is left over lands in the last window. A window's
    pieces stay in channel order, so it still changes speaker at most once;
    each piece keeps its own call time.
    """
    limit, speaker_gap = int(WINDOW_S * SAMPLE_RATE), int(SPEAKER_GAP_S * SAMPLE_RATE)
    pending = [p for channel in channels for p in _pieces(channel, padding_s)]
    windows = []
    while pending:
        current, length, waiting = [], 0, []
        for piece in pending:
            gap = speaker_gap if current and current[-1].speaker != piece.speaker else 0
            if current and length + gap + len(piece.samples) > limit:
                waiting.append(piece)
                continue
            current.append(piece)
            length += gap + len(piece.samples)
        windows.append(_window(current))
        pending = waiting
    return windows


def region_of(t: float, placed: tuple[Placed, ...]) -> int:
    """Index of the piece holding window time t; a time between pieces goes to the nearer one."""
    i = max(0, bisect.bisect_right([p.start for p in placed], t) - 1)
    if t > placed[i].end and i + 1 < len(placed) and placed[i + 1].start - t < t - placed[i].end:
        return i + 1
    return i


def to_call_time(t: float, p: Placed) -> float:
    return p.call_start + min(max(t - p.start, 0.0), p.end - p.start)
