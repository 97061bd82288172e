"""The live path's own transcription (qa.live_transcribe) with the bundled Whisper on espeak-ng speech:
its own model instance, a window fitted to the utterance, one segment per utterance at the utterance's times,
the call's language detected once from a long enough utterance."""

from __future__ import annotations

import numpy as np
import pytest
from sip_helpers import read_wav, speech_wav

from qa.live import ChannelCutter, live_options
from qa.live_transcribe import (
    FULL_FRAMES,
    LiveLanguage,
    live_transcribe_options,
    load_live_model,
    transcribe_live,
    window_frames,
)
from qa.pipeline import qa_options
from telesales.settings import SettingsError, load_settings

RATE = 16000
FRAME = 640


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path_factory.mktemp("var"))})


@pytest.fixture(scope="module")
def model(settings):
    return load_live_model(settings, live_options(settings).threads)


def _utterance(settings, folder, text: str, name: str, lead_s: float = 1.0):
    """The speech as the live path cuts it from a channel: lead_s of silence, the words, a pause."""
    words = read_wav(speech_wav(folder, text, name))[0]
    audio = np.concatenate([np.zeros(int(RATE * lead_s), np.int16), words, np.zeros(RATE, np.int16)]).tobytes()
    qa = qa_options(settings.qa)
    cutter = ChannelCutter("customer", qa.vad, qa.transcribe.padding_s, 12.0)
    cut = [u for i in range(0, len(audio), FRAME) for u in cutter.feed(audio[i:i + FRAME])]
    assert len(cut) == 1
    return cut[0]


def test_the_window_is_fitted_to_the_utterance_within_whispers_30_seconds():
    assert window_frames(300, 10.0) == 1000  # 3 s of audio: the 10 s floor
    assert window_frames(800, 10.0) == 1500  # 8 s: the audio plus 5 s, rounded up to 5 s
    assert window_frames(2840, 10.0) == FULL_FRAMES  # never past Whisper's window
    assert window_frames(300, 30.0) == FULL_FRAMES  # live.window_seconds = 30: Whisper's own


def test_an_utterance_becomes_one_segment_with_its_words_and_times(settings, model, tmp_path):
    utterance = _utterance(settings, tmp_path, "I want to cancel my order today.", "cancel", lead_s=1.5)
    options = live_transcribe_options(qa_options(settings.qa).transcribe, "en")
    assert options.beam_size == 1
    segments = transcribe_live(model, utterance, options, 10.0, LiveLanguage("en"))
    assert len(segments) == 1
    segment = segments[0]
    assert segment.speaker == "customer"
    assert "cancel" in segment.text.lower() and "order" in segment.text.lower(), segment.text
    # Tap times: where the speech was in the channel (1.5 s of silence first), within the 0.2 s padding.
    assert segment.start == pytest.approx(utterance.origin_s + utterance.spans[0].start, abs=0.25)
    assert segment.end == pytest.approx(utterance.end_s, abs=0.25)
    assert 1.2 <= segment.start <= 1.6
    # Whisper's own 30 s window hears the same words.
    full = transcribe_live(model, utterance, options, 30.0, LiveLanguage("en"))
    assert "cancel" in full[0].text.lower()


def test_the_calls_language_is_detected_once_from_a_long_enough_utterance(settings, model, tmp_path):
    options = live_transcribe_options(qa_options(settings.qa).transcribe, "auto")
    language = LiveLanguage("auto")
    short = _utterance(settings, tmp_path, "Yes.", "yes")
    transcribe_live(model, short, options, 10.0, language)
    assert language.known is None  # under 2 s of speech: not trusted for the whole call
    long = _utterance(settings, tmp_path, "Thank you for calling, how can I help you today?", "long")
    assert transcribe_live(model, long, options, 10.0, language)
    assert language.known == "en"
    assert LiveLanguage("zh").known == "zh"  # a configured language is never detected


def test_bad_live_model_settings_name_their_key(tmp_path):
    for key, value in (("THREADS", "-1"), ("WINDOW_SECONDS", "40"), ("WINDOW_SECONDS", "2")):
        bad = load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path), f"TELESALES_LIVE_{key}": value})
        with pytest.raises(SettingsError, match=f"live.{key.lower()}"):
            live_options(bad)
