"""Stereo WAV writing, crash repair and recording paths (no SIP needed)."""

from __future__ import annotations

import datetime as dt
import shutil
import wave
from array import array

import pytest

from telephony.frames import FRAME_BYTES, FRAME_SAMPLES
from telephony.recording import (
    HEADER_BYTES,
    CallRecording,
    StereoWavWriter,
    recording_path,
    repair_wav,
    sha256_file,
)


def frame(value: int) -> bytes:
    return array("h", [value] * FRAME_SAMPLES).tobytes()


def read_stereo(path) -> tuple[list[int], list[int]]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16_000, 2)
        samples = array("h", w.readframes(w.getnframes()))
    return list(samples[0::2]), list(samples[1::2])


def test_left_is_agent_and_right_is_customer(tmp_path):
    writer = StereoWavWriter(tmp_path / "a.wav")
    writer.write(frame(100), frame(-200))
    sha256, duration = writer.close()

    left, right = read_stereo(tmp_path / "a.wav")
    assert set(left) == {100} and set(right) == {-200}
    assert duration == pytest.approx(0.02)
    assert sha256 == sha256_file(tmp_path / "a.wav")


def test_an_unclosed_recording_is_readable_up_to_its_last_flush(tmp_path):
    writer = StereoWavWriter(tmp_path / "live.wav")
    for _ in range(50):
        writer.write(frame(1), frame(2))
    writer.flush()
    # Copy the file as a crash would leave it: the writer is never closed.
    shutil.copy(tmp_path / "live.wav", tmp_path / "crashed.wav")
    writer.abandon()

    left, right = read_stereo(tmp_path / "crashed.wav")
    assert len(left) == len(right) == 50 * FRAME_SAMPLES


def test_repair_fixes_the_header_and_drops_a_torn_sample(tmp_path):
    path = tmp_path / "torn.wav"
    writer = StereoWavWriter(path)
    writer.write(frame(5), frame(6))
    writer.flush()
    writer.abandon()
    with open(path, "ab") as f:  # audio written after the last header update, ending mid-sample
        f.write(frame(5)[:100] + b"\x01")

    duration = repair_wav(path)
    left, _ = read_stereo(path)
    assert len(left) == FRAME_SAMPLES + 25
    assert duration == pytest.approx(len(left) / 16_000)


def test_repair_of_a_file_cut_inside_the_header_gives_an_empty_valid_wav(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(b"RIFF\x00\x00")
    assert repair_wav(path) == 0
    assert path.stat().st_size == HEADER_BYTES
    assert read_stereo(path) == ([], [])


def test_idle_ticks_are_silence_and_keep_the_channels_aligned(tmp_path):
    rec = CallRecording(tmp_path / "r.wav")
    rec.push(rec.left, frame(7))
    rec.push(rec.right, None)
    rec.push(rec.left, None)
    rec.push(rec.right, frame(9))
    rec.close()

    left, right = read_stereo(tmp_path / "r.wav")
    assert left == [7] * FRAME_SAMPLES + [0] * FRAME_SAMPLES
    assert right == [0] * FRAME_SAMPLES + [9] * FRAME_SAMPLES
    assert FRAME_BYTES == 640


def test_recording_path_is_dated_and_named_by_the_call_uuid(tmp_path):
    when = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
    path = recording_path(tmp_path, "0d8f1c5e-7a4b-4c1a-9d0e-3b2a1f6e5d4c", when)
    assert path == tmp_path / "2026" / "03" / "04" / "0d8f1c5e-7a4b-4c1a-9d0e-3b2a1f6e5d4c.wav"
    with pytest.raises(ValueError):
        recording_path(tmp_path, "../../etc/passwd", when)
