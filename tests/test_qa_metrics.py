"""Talk metrics as pure functions over speech spans: no audio, no model."""

from __future__ import annotations

import pytest

from qa.metrics import (
    interruptions,
    mono_metrics,
    overlap,
    response_latencies,
    silences,
    talk_metrics,
    word_count,
)
from qa.segments import Span, TranscriptSegment


def spans(*pairs):
    return [Span(a, b) for a, b in pairs]


def test_talk_seconds_and_ratio_count_each_partys_speech():
    m = talk_metrics(spans((0, 6), (10, 12)), spans((6.5, 9.5)), [])
    assert m.agent_talk_s == pytest.approx(8)
    assert m.customer_talk_s == pytest.approx(3)
    assert m.agent_talk_ratio == pytest.approx(8 / 11)


def test_dead_air_is_the_longest_gap_where_neither_party_speaks():
    agent, customer = spans((1, 3), (20, 22)), spans((4, 8))
    assert silences(agent, customer) == pytest.approx([1, 12])
    m = talk_metrics(agent, customer, [])
    assert m.longest_silence_s == pytest.approx(12)
    assert m.total_silence_s == pytest.approx(13)


def test_silence_before_the_first_and_after_the_last_word_is_not_dead_air():
    m = talk_metrics(spans((30, 31)), spans((31.5, 32)), [])
    assert m.longest_silence_s == pytest.approx(0.5)


def test_overtalk_sums_the_time_both_parties_speak_at_once():
    assert overlap(spans((0, 5), (10, 15)), spans((4, 11), (14, 20))) == pytest.approx(1 + 1 + 1)


def test_agent_starting_inside_the_customers_turn_is_an_interruption_by_the_agent():
    agent, customer = spans((5, 9)), spans((0, 7))
    assert interruptions(agent, customer, 0.5) == 1
    assert interruptions(customer, agent, 0.5) == 0


def test_a_short_backchannel_is_not_an_interruption():
    assert interruptions(spans((3, 3.3)), spans((0, 7)), 0.5) == 0


def test_response_latency_is_the_gap_after_the_other_party_stops():
    agent, customer = spans((0, 2), (5, 6)), spans((2.5, 4), (7, 8))
    assert response_latencies(customer, agent) == pytest.approx([0.5, 1.0])
    assert response_latencies(agent, customer) == pytest.approx([1.0])
    m = talk_metrics(agent, customer, [])
    assert m.customer_response_latency_s == pytest.approx(0.75)
    assert m.agent_response_latency_s == pytest.approx(1.0)


def test_an_overlapping_reply_has_no_latency():
    assert response_latencies(spans((3, 5)), spans((0, 4))) == []


def test_speaking_rate_counts_english_words_and_chinese_characters():
    assert word_count("Hello, I'm Emma from Sunrise Solar.") == 6
    assert word_count("您好，我是小王") == 6
    transcript = [TranscriptSegment(0, 30, "agent", "one two three " * 10, 0.9)]
    m = talk_metrics(spans((0, 30)), spans((31, 32)), transcript)
    assert m.agent_words_per_minute == pytest.approx(60)


def test_nobody_speaking_gives_no_ratio_and_no_silence():
    m = talk_metrics([], [], [])
    assert m.agent_talk_ratio is None
    assert m.longest_silence_s == 0
    assert m.agent_response_latency_s is None


def test_mono_metrics_measure_silence_but_not_the_parties():
    m = mono_metrics(spans((0, 2), (9, 10)))
    assert m.longest_silence_s == pytest.approx(7)
    assert m.agent_talk_ratio is None and m.overtalk_s is None and m.interruptions_by_agent is None
