"""The live path's logic on real speech (espeak-ng): utterances cut as audio streams in, metrics, phrase alerts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sip_helpers import read_wav, speech_wav

from qa.live import ChannelCutter, LiveMetrics, live_options, phrase_alerts
from qa.pipeline import qa_options
from qa.segments import TranscriptSegment
from qa.vad import speech_spans
from telesales.settings import SettingsError, load_settings

RATE = 16000
FRAME = 640  # bytes: 20 ms, what the tap delivers


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path_factory.mktemp("var"))})


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    samples, _, _ = read_wav(speech_wav(tmp_path_factory.mktemp("voices"), "Hello there.", "hello"))
    return samples


def _frames(samples: np.ndarray):
    pcm = samples.astype("<i2").tobytes()
    return [pcm[i:i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


def _cutter(settings, max_segment_s=12.0):
    qa = qa_options(settings.qa)
    return ChannelCutter("customer", qa.vad, qa.transcribe.padding_s, max_segment_s)


def test_utterances_are_cut_as_their_speaker_pauses_at_the_right_call_times(settings, words):
    silence = np.zeros(RATE * 2, np.int16)
    call = np.concatenate([silence, words, silence, words, silence])
    cutter = _cutter(settings)
    cut_at, utterances = [], []
    for n, frame in enumerate(_frames(call)):
        for u in cutter.feed(frame):
            utterances.append(u)
            cut_at.append((n + 1) * 0.02)
    assert len(utterances) == 2
    # The post-call analysis of the whole channel finds the same speech at the same times.
    whole = speech_spans(call, qa_options(settings.qa).vad)
    assert len(whole) == 2
    for u, span, cut in zip(utterances, whole, cut_at, strict=True):
        assert u.speaker == "customer"
        assert u.origin_s + u.spans[0].start == pytest.approx(span.start, abs=0.07)
        assert u.end_s == pytest.approx(span.end, abs=0.07)
        # Cut within the merge gap (0.3 s) plus a VAD frame of the speech's end: not at the end of the call.
        assert 0 < cut - u.end_s <= 0.3 + 0.07
    assert cutter.flush() is None  # nothing held after the last pause


def test_unbroken_speech_is_cut_after_max_segment_seconds_and_the_rest_flushed(settings, words):
    cutter = _cutter(settings, max_segment_s=2.0)
    babble = np.tile(words, 6)  # no pause long enough to end an utterance... nor short enough to merge all
    utterances = [u for frame in _frames(babble) for u in cutter.feed(frame)]
    rest = cutter.flush()
    assert utterances, "a long stretch is cut before it ends"
    assert all(u.samples.size <= 2.0 * RATE + 640 for u in utterances)
    assert rest is None or rest.origin_s >= utterances[-1].origin_s


def test_unbroken_speech_is_cut_at_a_short_pause_not_mid_word(settings, words):
    voiced = np.flatnonzero(np.abs(words) > 300)
    spoken = words[voiced[0] : voiced[-1] + 1]  # espeak-ng's own silence before and after cut off
    pause = np.zeros(int(0.15 * RATE), np.int16)  # a breath: shorter than the merge gap, so no utterance ends
    babble = np.concatenate([spoken, pause] * 8)
    cutter = _cutter(settings, max_segment_s=2.0)
    utterances = [u for frame in _frames(babble) for u in cutter.feed(frame)]
    assert len(utterances) >= 2
    loud = np.sqrt(np.mean(spoken.astype(np.float64) ** 2))
    for u in utterances:
        end = round(u.origin_s * RATE) + u.samples.size
        before_cut = babble[end - RATE * 30 // 1000 : end].astype(np.float64)
        assert np.sqrt(np.mean(before_cut**2)) < 0.05 * loud, f"cut mid-word at {end / RATE:.2f} s"


def test_long_silence_and_overtalk_raise_one_alert_per_episode(settings, words):
    options = dataclasses.replace(live_options(settings), max_silence_s=1.0, max_overtalk_s=0.5)
    agent, customer = _cutter(settings), _cutter(settings)
    metrics = LiveMetrics(options, 0.3)
    quiet = np.zeros(int(RATE * 1.6), np.int16)
    talk = np.tile(words, 2)
    agent_audio = np.concatenate([quiet, talk])
    customer_audio = np.concatenate([quiet, talk])  # both at once: overtalk
    alerts = []
    for a, c in zip(_frames(agent_audio), _frames(customer_audio), strict=False):
        agent.feed(a)
        customer.feed(c)
        alerts += metrics.update(agent, customer)
    names = [a.name for a in alerts]
    assert names == ["long_silence", "overtalk"], names
    assert alerts[0].kind == "metric" and "bound 1 s" in alerts[0].text


def test_phrase_alerts_for_each_side_and_both_scripts(settings):
    options = live_options(settings)
    said = lambda speaker, text: TranscriptSegment(0, 1, speaker, text, 0.9)  # noqa: E731
    assert [a.name for a in phrase_alerts(said("customer", "I want to cancel this."), options)] == ["cancel"]
    assert [a.name for a in phrase_alerts(said("customer", "我要退款"), options)] == ["退款"]
    assert phrase_alerts(said("customer", "我要投訴你們"), options)[0].name in ("投訴", "投诉")
    assert phrase_alerts(said("customer", "Thanks, that sounds good."), options) == []
    # The agent's forbidden phrases come from the scorecard's phrase_absent checks.
    assert [a.speaker for a in phrase_alerts(said("agent", "It is completely risk free."), options)] == ["agent"]
    assert phrase_alerts(said("agent", "I want to cancel"), options) == []  # a customer phrase, not the agent's


def test_a_bad_live_setting_names_its_key(tmp_path):
    bad = load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path), "TELESALES_LIVE_MAX_SEGMENT_SECONDS": "40"})
    with pytest.raises(SettingsError, match="live.max_segment_seconds"):
        live_options(bad)
