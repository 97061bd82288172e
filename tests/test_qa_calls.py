"""Synthetic calls through the real pipeline and the real bundled Whisper base model.

Each call is synthesised once per machine (cached by script hash). Its
analysis (VAD, transcription, metrics) is cached next to it under a key made
of the WAV, the settings, the model file's checksum, the faster-whisper and
CTranslate2 versions and the source of the qa modules that analyse, so any
change to what produces it runs the real model again; an unchanged tree
re-scores in seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from synth_calls import CALLS, RATE, SynthCall, rendered, speak, write_wav

import qa
from qa.audio import read_recording
from qa.pipeline import Analysis, analyse, qa_options, score
from qa.scorecard import load_scorecard
from telesales.cli import main
from telesales.settings import CONFIG_DIR, load_settings

SYNTH_CACHE = Path(tempfile.gettempdir()) / "telesales-synth-calls"

# The modules that turn a WAV into an Analysis; a change to any of them invalidates the cache.
ANALYSIS_SOURCES = (
    "audio",
    "vad",
    "packing",
    "transcribe",
    "transcript",
    "metrics",
    "segments",
    "pipeline",
    "model_files",
)

# The first run on a machine transcribes every call: minutes on 2 cores, in whichever test comes first.
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="session")
def qa_settings(whisper_data_dir):
    # The folder the session's model was joined into: the analysis cache key reads its manifest.
    return load_settings(environ={"TELESALES_DATA_DIR": str(whisper_data_dir)})


@pytest.fixture(scope="session")
def whisper(whisper_base):
    return whisper_base


@pytest.fixture(scope="session")
def sales():
    return load_scorecard("sales", CONFIG_DIR)


def _options(settings, language: str):
    qa = vars(settings.qa) | {"language": language}
    return qa_options(type(settings.qa)(**qa))


def _analysis_key(wav: Path, options, model_dir: Path) -> str:
    digest = hashlib.sha256(wav.read_bytes())
    digest.update(repr(options).encode())
    digest.update((model_dir / "telesales-manifest.json").read_bytes())
    for dist in ("faster-whisper", "ctranslate2", "webrtcvad-wheels"):
        digest.update(metadata.version(dist).encode())
    for module in ANALYSIS_SOURCES:
        digest.update((Path(qa.__file__).parent / f"{module}.py").read_bytes())
    return digest.hexdigest()[:20]


@pytest.fixture(scope="session")
def analysed(whisper, qa_settings) -> dict[str, tuple[SynthCall, Analysis]]:
    """Every synthetic call, analysed once. Chinese calls run with qa.language = "zh", as a Chinese desk would."""
    out = {}
    model_dir = qa_settings.data_dir / "models" / "whisper-base"
    for call in CALLS:
        wav, _ = rendered(call, SYNTH_CACHE)
        options = _options(qa_settings, "zh" if call.language == "zh" else "auto")
        cached = SYNTH_CACHE / f"{call.name}-{_analysis_key(wav, options, model_dir)}.analysis.pickle"
        if cached.exists():
            analysis = pickle.loads(cached.read_bytes())
        else:
            analysis = analyse(read_recording(wav), whisper, options)
            cached.write_bytes(pickle.dumps(analysis))
        out[call.name] = (call, analysis)
    return out


def _expected(call: SynthCall, check) -> bool | None:
    if check.dispositions and call.disposition not in check.dispositions:
        return None
    return check.id not in call.expected_failures


def test_default_checks_give_the_expected_result_on_95_percent_of_call_check_pairs(analysed, sales):
    wrong, pairs = [], 0
    for name, (call, analysis) in analysed.items():
        result = score(analysis, sales, call.disposition)
        for check, outcome in zip(sales.checks, result.checks, strict=True):
            pairs += 1
            if outcome.passed != _expected(call, check):
                wrong.append(f"{name}/{check.id}: got {outcome.passed}, evidence {outcome.evidence}")
    accuracy = 1 - len(wrong) / pairs
    print(f"\nsales scorecard: {pairs - len(wrong)}/{pairs} (call, check) pairs as expected ({accuracy:.1%})")
    print("\n".join(wrong))
    assert accuracy >= 0.95, "\n".join(wrong)


def test_every_forbidden_phrase_call_fails_the_forbidden_phrase_check(analysed, sales):
    forbidden = [name for name, (call, _) in analysed.items() if "no_forbidden_phrases" in call.expected_failures]
    assert len(forbidden) >= 2
    for name in forbidden:
        call, analysis = analysed[name]
        result = {c.id: c for c in score(analysis, sales, call.disposition).checks}["no_forbidden_phrases"]
        assert result.passed is False, (name, analysis.transcript)
        assert all("start" in e and "text" in e for e in result.evidence)


def test_every_segment_is_attributed_to_the_channel_it_was_said_on(analysed):
    call, analysis = analysed["good_sale"]
    _, placed = rendered(call, SYNTH_CACHE)
    for segment in analysis.transcript:
        line = min(placed, key=lambda p: abs(p.start - segment.start))
        assert line.speaker == segment.speaker, (segment, line)
        assert abs(line.start - segment.start) < 0.6


def test_sale_only_checks_do_not_apply_to_a_callback(analysed, sales):
    call, analysis = analysed["good_callback"]
    checks = {c.id: c for c in score(analysis, sales, "CALLBACK").checks}
    for check_id in ("price_confirmed", "delivery_confirmed", "payment_confirmed"):
        assert checks[check_id].passed is None
        assert "SALE" in checks[check_id].evidence[0]["reason"]


def test_talk_metrics_of_a_synthetic_call_match_its_script(analysed):
    call, analysis = analysed["dead_air"]
    _, placed = rendered(call, SYNTH_CACHE)
    assert analysis.metrics.longest_silence_s == pytest.approx(10.5, abs=0.5)
    agent_script = sum(p.end - p.start for p in placed if p.speaker == "agent")
    assert analysis.metrics.agent_talk_s == pytest.approx(agent_script, rel=0.15)
    call, analysis = analysed["talk_over"]
    assert analysis.metrics.interruptions_by_agent == 3
    assert analysis.metrics.overtalk_s == pytest.approx(7.5, abs=1.5)


# --- channels that hold no speech ------------------------------------------


def _tone_sequence(seconds: float) -> np.ndarray:
    """Hold-music-like: a repeating melody of sine notes with soft attacks."""
    notes = [262, 330, 392, 523, 392, 330]
    t = np.arange(int(0.4 * RATE)) / RATE
    envelope = np.minimum(1, t / 0.05) * np.minimum(1, (0.4 - t) / 0.1)
    melody = np.concatenate([np.sin(2 * np.pi * f * t) * envelope for f in notes])
    reps = int(np.ceil(seconds * RATE / len(melody)))
    return (np.tile(melody, reps)[: int(seconds * RATE)] * 8000).astype(np.int16)


def _white_noise(seconds: float) -> np.ndarray:
    return (np.random.default_rng(7).normal(0, 2500, int(seconds * RATE))).clip(-32768, 32767).astype(np.int16)


@pytest.mark.parametrize("kind", ["silence", "white_noise", "hold_music"])
def test_a_channel_without_speech_produces_no_transcript_text(kind, whisper, qa_settings, tmp_path):
    seconds = 20.0
    other = {
        "silence": np.zeros(int(seconds * RATE), np.int16),
        "white_noise": _white_noise(seconds),
        "hold_music": _tone_sequence(seconds),
    }[kind]
    with tempfile.TemporaryDirectory() as tmp:
        speech = speak("Hello, I am still here, let me check that for you.", "en-us", "165", Path(tmp))
    agent = np.zeros(len(other), np.int16)
    agent[RATE : RATE + len(speech)] = speech[: len(other) - RATE]
    path = tmp_path / f"{kind}.wav"
    write_wav(path, [agent, other])
    analysis = analyse(read_recording(path), whisper, qa_options(qa_settings.qa))
    assert [s for s in analysis.transcript if s.speaker == "customer"] == []
    assert any("check" in s.text.lower() for s in analysis.transcript if s.speaker == "agent")


def test_a_recording_with_no_speech_is_unscorable_not_zero(whisper, qa_settings, sales, tmp_path):
    path = tmp_path / "noise.wav"
    write_wav(path, [_white_noise(10.0), _tone_sequence(10.0)])
    result = score(analyse(read_recording(path), whisper, qa_options(qa_settings.qa)), sales, "SALE")
    assert result.score is None
    assert all(c.passed is None for c in result.checks)
    assert set(result.categories.values()) == {None}


# --- the command ----------------------------------------------------------------


@pytest.fixture
def restore_logging():
    """main() points the root logger at this test's captured stderr, which closes when the test ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


SHORT = SynthCall(
    "short",
    (
        CALLS[0].lines[0],
        CALLS[0].lines[1],
        CALLS[0].lines[-2],
    ),
)


def test_qa_score_prints_the_agreed_json_shape(tmp_path, capsys, monkeypatch, qa_settings, restore_logging):
    monkeypatch.setenv("TELESALES_DATA_DIR", str(qa_settings.data_dir))
    wav, _ = rendered(SHORT, SYNTH_CACHE)
    assert main(["qa", "score", str(wav), "--json", "--disposition", "SALE"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"duration_s", "metrics", "transcript", "checks", "categories", "score"}
    assert {"speaker", "start", "end", "text"} <= set(result["transcript"][0])
    assert [s["speaker"] for s in result["transcript"]] == ["agent", "customer", "agent"]
    assert set(result["checks"][0]) == {"id", "category", "passed", "weight", "evidence"}
    assert 0 <= result["score"] <= 100
    assert result["metrics"]["agent_talk_ratio"] > 0


def test_a_mono_recording_is_scored_as_one_unknown_speaker_with_a_warning(
    tmp_path, capsys, monkeypatch, qa_settings, restore_logging
):
    monkeypatch.setenv("TELESALES_DATA_DIR", str(qa_settings.data_dir))
    wav, _ = rendered(SHORT, SYNTH_CACHE)
    stereo = read_recording(wav)
    mono = tmp_path / "mono.wav"
    write_wav(mono, [(stereo.channels[0].astype(np.int32) + stereo.channels[1]).clip(-32768, 32767).astype(np.int16)])
    assert main(["qa", "score", str(mono), "--json"]) == 0
    out = capsys.readouterr()
    assert "warning: mono recording" in out.err
    result = json.loads(out.out)
    assert {s["speaker"] for s in result["transcript"]} == {"unknown"}
    checks = {c["id"]: c for c in result["checks"]}
    assert checks["greeting"]["passed"] is True
    assert checks["agent_talk_ratio"]["passed"] is None
