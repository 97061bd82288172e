"""Reading recordings, and `telesales qa score` refusing files it cannot score (exit 2, clear message)."""

from __future__ import annotations

import logging
import struct
import wave

import numpy as np
import pytest

from qa.audio import SAMPLE_RATE, RecordingError, read_recording
from telesales.cli import main


@pytest.fixture(autouse=True)
def restore_logging():
    """main() points the root logger at this test's captured stderr, which closes when the test ends."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def write(path, channels=2, rate=16000, width=2, frames=1600):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * (width // 2) * channels * frames if width > 1 else b"\x80" * channels * frames)
    return path


def float_wav(path):
    data = np.zeros(1600, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_a_stereo_recording_gives_agent_and_customer_channels(tmp_path):
    rec = read_recording(write(tmp_path / "a.wav"))
    assert rec.is_stereo
    assert rec.duration_s == pytest.approx(0.1)


def test_an_8_khz_recording_is_resampled_to_16_khz(tmp_path):
    rec = read_recording(write(tmp_path / "a.wav", rate=8000, frames=8000))
    assert len(rec.channels[0]) == SAMPLE_RATE
    assert rec.source_rate == 8000


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("name,phone\nAda,123\n"), "not a WAV"),
        (lambda p: write(p, frames=0), "holds no audio"),
        (lambda p: write(p, width=1), "unsupported WAV encoding"),
        (float_wav, "unsupported WAV encoding"),
        (lambda p: write(p, channels=4), "4 channels"),
    ],
    ids=["empty", "csv", "no_frames", "8_bit", "float", "four_channels"],
)
def test_a_file_that_is_not_a_usable_recording_is_refused_with_a_reason(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(RecordingError, match=message):
        read_recording(path)


def test_a_truncated_recording_is_refused(tmp_path):
    path = write(tmp_path / "a.wav", frames=16000)
    path.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(RecordingError, match="truncated: the header declares 1.00 s"):
        read_recording(path)


@pytest.mark.parametrize("content", [b"", b"RIFF\x00\x00", b"hello world, not audio at all"])
def test_qa_score_exits_2_with_a_message_for_a_file_it_cannot_read(tmp_path, capsys, content, monkeypatch):
    monkeypatch.setenv("TELESALES_DATA_DIR", str(tmp_path / "var"))
    path = tmp_path / "call.wav"
    path.write_bytes(content)
    assert main(["qa", "score", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("telesales: ") and str(path) in err
    assert "Traceback" not in err


def test_qa_score_exits_2_for_an_unknown_scorecard(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TELESALES_DATA_DIR", str(tmp_path / "var"))
    assert main(["qa", "score", str(write(tmp_path / "a.wav")), "--scorecard", "nope"]) == 2
    assert "no scorecard 'nope'" in capsys.readouterr().err


def test_qa_score_exits_2_for_a_missing_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TELESALES_DATA_DIR", str(tmp_path / "var"))
    assert main(["qa", "score", str(tmp_path / "missing.wav")]) == 2
    assert "cannot read" in capsys.readouterr().err
