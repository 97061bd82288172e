"""Transcription of a call's speech spans with faster-whisper, each channel on its own.

Only speech is transcribed: a channel's padded VAD spans are packed one after
another with a short gap of silence between them, and transcribed as one
stream with word timestamps; each word then goes back to the span it was said
in, which gives its call time. Whisper's encoder costs the same for every
30 s window whatever it holds (about 3 s per window for Whisper base on 2
cores), so the saving is the windows that would carry the other party's
turns and dead air, and Whisper gets no silence to invent text on.

Channels are transcribed separately rather than packed together: packing
both parties into one stream saved no windows on real dialogue (it is mostly
speech) and word timestamps at a change of speaker sometimes put a word on
the wrong side; a channel of its own cannot.

faster-whisper returns a lazy generator that does the work while it is
iterated; it is consumed here, in the worker process, never on an event loop.
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass

import numpy as np

from qa.audio import SAMPLE_RATE, to_float
from qa.segments import Span, TranscriptSegment
from qa.vad import padded

_GAP_S = 0.4  # silence between packed spans; long enough for Whisper to close a segment


@dataclass(frozen=True)
class TranscribeOptions:
    language: str = "auto"  # "zh", "en" or "auto" (detected per channel)
    beam_size: int = 1
    padding_s: float = 0.2
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    min_log_prob: float = -1.5  # below this a segment is dropped even when Whisper thought it was speech
    compression_ratio_threshold: float = 2.4
    max_repeats: int = 3  # a phrase said this many times in a row is a decoding loop


@dataclass(frozen=True)
class _Placed:
    packed_start: float
    packed_end: float
    call_start: float
    speaker: str


@dataclass(frozen=True)
class ChannelSpeech:
    speaker: str
    samples: np.ndarray  # int16 at SAMPLE_RATE
    spans: list[Span]


def load_whisper(model_path: str, device: str, compute_type: str, threads: int, local_only: bool):
    """Load the model once per worker process (seconds; keep it for every job)."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        model_path,
        device=device,
        compute_type=compute_type,
        cpu_threads=threads or (os.cpu_count() or 1),
        local_files_only=local_only,
    )


def pack(channel: ChannelSpeech, padding_s: float) -> tuple[np.ndarray, list[_Placed]]:
    """Concatenate the channel's padded spans with _GAP_S of silence between them."""
    regions = padded(channel.spans, padding_s, len(channel.samples) / SAMPLE_RATE)
    gap = np.zeros(int(_GAP_S * SAMPLE_RATE), dtype=np.int16)
    pieces, placed, cursor = [], [], 0
    for span in regions:
        piece = channel.samples[int(span.start * SAMPLE_RATE) : int(span.end * SAMPLE_RATE)]
        end = (cursor + len(piece)) / SAMPLE_RATE
        placed.append(_Placed(cursor / SAMPLE_RATE, end, span.start, channel.speaker))
        pieces += [piece, gap]
        cursor += len(piece) + len(gap)
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.int16)), placed


def region_of(t: float, placed: list[_Placed]) -> int:
    """Index of the packed span holding time t; a time in a gap goes to the nearer span."""
    starts = [p.packed_start for p in placed]
    i = max(0, bisect.bisect_right(starts, t) - 1)
    if t > placed[i].packed_end and i + 1 < len(placed):
        if placed[i + 1].packed_start - t < t - placed[i].packed_end:
            return i + 1
    return i


def to_call_time(t: float, p: _Placed) -> float:
    return p.call_start + min(max(t - p.packed_start, 0.0), p.packed_end - p.packed_start)


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


def _credible(segment, options: TranscribeOptions) -> bool:
    """The guards against text invented on noise, music or silence that slipped past VAD."""
    text = segment.text.strip()
    if not _TOKEN.search(text):
        return False
    if segment.no_speech_prob > options.no_speech_threshold and segment.avg_logprob < options.log_prob_threshold:
        return False
    if segment.avg_logprob < options.min_log_prob:
        return False
    if segment.compression_ratio > options.compression_ratio_threshold:
        return False
    return not is_repetition_loop(text, options.max_repeats)


def _words_by_region(segments, placed: list[_Placed], options: TranscribeOptions) -> list[tuple[int, list]]:
    """Credible words grouped by the packed span they fall in, in packed order."""
    groups: list[tuple[int, list]] = []
    for seg in segments:
        if not _credible(seg, options):
            continue
        for word in seg.words or ():
            index = region_of((word.start + word.end) / 2, placed)
            if groups and groups[-1][0] == index:
                groups[-1][1].append(word)
            else:
                groups.append((index, [word]))
    return groups


def _segment(words: list, p: _Placed) -> TranscriptSegment | None:
    text = "".join(w.word for w in words).strip()
    if not _TOKEN.search(text):
        return None
    start, end = to_call_time(words[0].start, p), to_call_time(words[-1].end, p)
    confidence = sum(w.probability for w in words) / len(words)
    return TranscriptSegment(start, max(start, end), p.speaker, text, confidence)


def transcribe_channel(
    model, channel: ChannelSpeech, options: TranscribeOptions, language: str
) -> list[TranscriptSegment]:
    """Transcript segments of one channel, one per VAD span that held credible words."""
    audio, placed = pack(channel, options.padding_s)
    if not placed:
        return []
    generator, _info = model.transcribe(
        to_float(audio),
        language=language,
        beam_size=options.beam_size,
        condition_on_previous_text=False,  # one bad window must not seed the next
        no_speech_threshold=options.no_speech_threshold,
        log_prob_threshold=options.log_prob_threshold,
        compression_ratio_threshold=options.compression_ratio_threshold,
        word_timestamps=True,
        vad_filter=False,  # webrtcvad already chose the audio
    )
    segments = list(generator)
    result, previous = [], None
    for index, words in _words_by_region(segments, placed, options):
        segment = _segment(words, placed[index])
        if segment is None or is_repetition_loop(segment.text, options.max_repeats) or segment.text == previous:
            continue
        previous = segment.text
        result.append(segment)
    return result


def call_language(model, channels: list[ChannelSpeech], options: TranscribeOptions) -> str:
    """The configured language, or the one detected on the channel with the most speech.

    Detection costs an encoder pass of its own (a tenth or more of a call's
    work on a CPU); once per call is enough, since both parties of a call
    speak the same language.
    """
    if options.language != "auto":
        return options.language
    talker = max(channels, key=lambda ch: sum(s.duration for s in ch.spans))
    audio, _ = pack(talker, options.padding_s)
    language, _probability, _all = model.detect_language(to_float(audio[: 30 * SAMPLE_RATE]))
    return language


def transcribe_call(model, channels: list[ChannelSpeech], options: TranscribeOptions) -> list[TranscriptSegment]:
    """All channels' segments (not yet ordered across channels)."""
    if not any(ch.spans for ch in channels):
        return []
    language = call_language(model, channels, options)
    return [segment for channel in channels for segment in transcribe_channel(model, channel, options, language)]
