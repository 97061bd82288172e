"""Voice activity on real espeak-ng speech, silence and noise."""

from __future__ import annotations

import numpy as np
import pytest
from synth_calls import RATE, speak

from qa.segments import Span
from qa.vad import VadOptions, padded, spectral_flatness, speech_spans


@pytest.fixture(scope="module")
def utterance(tmp_path_factory):
    return speak("Good morning, this is Emma from Sunrise Solar.", "en-us", "165", tmp_path_factory.mktemp("vad"))


def test_speech_is_found_where_it_was_placed(utterance):
    channel = np.zeros(6 * RATE, np.int16)
    channel[2 * RATE : 2 * RATE + len(utterance)] = utterance
    spans = speech_spans(channel, VadOptions())
    assert len(spans) == 1
    assert spans[0].start == pytest.approx(2.0, abs=0.2)
    assert spans[0].end == pytest.approx(2 + len(utterance) / RATE, abs=0.3)


def test_silence_has_no_speech():
    assert speech_spans(np.zeros(5 * RATE, np.int16), VadOptions()) == []


def test_loud_white_noise_is_not_speech_even_where_webrtcvad_says_so():
    noise = np.random.default_rng(3).normal(0, 3000, 5 * RATE).clip(-32768, 32767).astype(np.int16)
    assert spectral_flatness(noise) > 0.5
    assert speech_spans(noise, VadOptions()) == []


def test_speech_has_a_peaked_spectrum(utterance):
    assert spectral_flatness(utterance) < 0.05


def test_padding_widens_spans_within_the_recording_and_joins_overlaps():
    assert padded([Span(0.1, 1.0), Span(1.3, 2.0), Span(4.0, 4.9)], 0.2, 5.0) == [Span(0.0, 2.2), Span(3.8, 5.0)]
