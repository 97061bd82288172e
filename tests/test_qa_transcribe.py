"""The pure parts of transcription: packing speech spans, mapping times back, the repetition guard."""

from __future__ import annotations

import numpy as np
import pytest

from qa.segments import Span
from qa.transcribe import ChannelSpeech, is_repetition_loop, pack, region_of, to_call_time


def test_packing_keeps_only_the_speech_and_maps_times_back_to_the_call():
    samples = np.arange(20 * 16000, dtype=np.int64).astype(np.int16)
    channel = ChannelSpeech("agent", samples, [Span(2.0, 3.0), Span(10.0, 11.5)])
    audio, placed = pack(channel, padding_s=0.0)
    assert len(audio) / 16000 == pytest.approx(1.0 + 0.4 + 1.5 + 0.4)
    second = placed[region_of(1.6, placed)]
    assert second.call_start == 10.0
    assert to_call_time(1.9, second) == pytest.approx(10.5)


def test_a_time_in_the_gap_between_spans_goes_to_the_nearer_span():
    channel = ChannelSpeech("agent", np.zeros(20 * 16000, np.int16), [Span(2.0, 3.0), Span(10.0, 11.0)])
    _, placed = pack(channel, padding_s=0.0)
    assert region_of(1.05, placed) == 0
    assert region_of(1.35, placed) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Thank you. Thank you. Thank you.",
        "請不吝點贊 訂閱 請不吝點贊 訂閱 請不吝點贊 訂閱",
        "寧可寧可寧可",
        "no no no no no",
    ],
)
def test_a_phrase_repeated_back_to_back_is_a_decoding_loop(text):
    assert is_repetition_loop(text, 3)


@pytest.mark.parametrize(
    "text", ["No, no, no, that is not what I said.", "谢谢您，再见！", "Thank you, thank you so much."]
)
def test_ordinary_speech_is_not_a_loop(text):
    assert not is_repetition_loop(text, 3)
