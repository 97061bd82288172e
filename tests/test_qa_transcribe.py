"""The pure parts of transcription: packing speech into windows, mapping times back, the repetition guard."""

from __future__ import annotations

import numpy as np
import pytest

from qa.packing import SPEAKER_GAP_S, WINDOW_S, ChannelSpeech, pack_windows, region_of, to_call_time
from qa.segments import Span
from qa.transcribe import _rounds, is_repetition_loop

RATE = 16000


def _tone(seconds: float) -> np.ndarray:
    return (np.sin(np.arange(int(seconds * RATE)) * 0.2) * 8000).astype(np.int16)


def test_packing_keeps_only_the_speech_and_maps_times_back_to_the_call():
    samples = np.arange(20 * RATE, dtype=np.int64).astype(np.int16)
    channel = ChannelSpeech("agent", samples, [Span(2.0, 3.0), Span(10.0, 11.5)])
    [window] = pack_windows([channel], padding_s=0.0)
    assert len(window.samples) / RATE == pytest.approx(1.0 + 1.5)
    assert np.array_equal(window.samples[RATE:], samples[10 * RATE : int(11.5 * RATE)])
    second = window.placed[region_of(1.6, window.placed)]
    assert second.call_start == 10.0
    assert to_call_time(1.9, second) == pytest.approx(10.9)


def test_the_change_of_speaker_inside_a_window_is_a_gap_and_a_time_in_it_goes_to_the_nearer_speaker():
    agent = ChannelSpeech("agent", _tone(20), [Span(2.0, 3.0)])
    customer = ChannelSpeech("customer", _tone(20), [Span(4.0, 5.0)])
    [window] = pack_windows([agent, customer], padding_s=0.0)
    assert [p.speaker for p in window.placed] == ["agent", "customer"]
    assert window.placed[1].start == pytest.approx(1.0 + SPEAKER_GAP_S)
    assert not window.samples[RATE : int((1.0 + SPEAKER_GAP_S) * RATE)].any()
    assert window.placed[region_of(1.0 + SPEAKER_GAP_S * 0.4, window.placed)].speaker == "agent"
    assert window.placed[region_of(1.0 + SPEAKER_GAP_S * 0.6, window.placed)].speaker == "customer"


def test_windows_hold_at_most_30_s_change_speaker_once_and_keep_every_utterance_whole():
    spans = [Span(1.0 + 5.0 * i, 5.0 + 5.0 * i) for i in range(20)]
    channels = [ChannelSpeech(speaker, _tone(110), spans) for speaker in ("agent", "customer")]
    windows = pack_windows(channels, padding_s=0.2)
    assert all(len(w.samples) <= WINDOW_S * RATE for w in windows)
    placed = [p for w in windows for p in w.placed]
    assert len(placed) == 40 and all(p.end - p.start == pytest.approx(4.4, abs=0.001) for p in placed)
    assert [p.speaker for p in placed] == ["agent"] * 20 + ["customer"] * 20
    assert sum(len({p.speaker for p in w.placed}) - 1 for w in windows) == 1
    # six 4.4 s utterances fill a window: 6 + 6 + 6 + (2 agent, gap, 4 customer) + 6 + 6 + 4
    assert len(windows) == 7


def test_an_utterance_longer_than_a_window_is_cut_at_its_quietest_moment():
    samples = _tone(70)
    samples[int(24.0 * RATE) : int(24.2 * RATE)] = 0  # a breath
    [first, second, third] = pack_windows([ChannelSpeech("agent", samples, [Span(0.0, 70.0)])], padding_s=0.0)
    assert 24.0 <= first.placed[0].end <= 24.2
    assert second.placed[0].call_start == pytest.approx(first.placed[0].end, abs=0.001)
    assert third.placed[0].call_start + third.placed[0].end == pytest.approx(70.0, abs=0.001)


def test_a_piece_too_long_for_the_room_left_waits_while_a_later_shorter_one_fills_the_window():
    spans = [Span(0.0, 20.0), Span(21.0, 33.0), Span(34.0, 42.0), Span(43.0, 55.0)]  # 20, 12, 8 and 12 s
    [first, second] = pack_windows([ChannelSpeech("agent", _tone(60), spans)], padding_s=0.0)
    assert [p.call_start for p in first.placed] == [0.0, 34.0]  # strictly in order: 20 | 12 + 8 | 12
    assert [p.call_start for p in second.placed] == [21.0, 43.0]


def test_windows_share_out_evenly_over_the_lanes_and_an_odd_last_one_gets_a_round_of_its_own():
    windows = [pack_windows([ChannelSpeech("agent", _tone(29.0), [Span(0.0, 29.0)])], padding_s=0.0)[0]] * 40

    def shape(n: int) -> list[list[int]]:
        return [[len(batch) for batch in batches] for batches in _rounds(windows[:n], lanes=2)]

    assert shape(1) == [[1]]  # one window: the all-threads instance, not one lane of two
    assert shape(2) == [[1, 1]]
    assert shape(3) == [[1, 1], [1]]  # not [[2, 1]]: one lane would encode and decode two windows alone
    assert shape(11) == [[5, 5], [1]]
    assert shape(40) == [[7, 7], [7, 7], [7, 5]]  # at most _BATCH windows a batch
    assert [[len(b) for b in r] for r in _rounds(windows[:3], lanes=1)] == [[3]]


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
