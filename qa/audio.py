"""Reading a call recording: a 16-bit PCM WAV, stereo (left = agent, right = customer) or mono.

Recordings from the seats are 16 kHz, which webrtcvad and Whisper both take;
a file at another rate (8 kHz from a PBX export, 44.1 kHz from a desk
recorder) is resampled once here so every later stage sees one format.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crm.errors import UserError

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2


class RecordingError(UserError):
    """The file cannot be read as a call recording."""

    error_id = "bad_recording"


@dataclass(frozen=True)
class Recording:
    """int16 samples per channel at SAMPLE_RATE; channels[0] is the agent on a stereo call."""

    channels: tuple[np.ndarray, ...]
    source_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.channels[0]) / SAMPLE_RATE

    @property
    def is_stereo(self) -> bool:
        return len(self.channels) == 2


def _open(path: Path) -> wave.Wave_read:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise RecordingError(f"{path}: cannot read: {e.strerror}") from None
    if size == 0:
        raise RecordingError(f"{path}: the file is empty")
    try:
        return wave.open(str(path), "rb")
    except wave.Error as e:
        # The wave module reports e.g. "unknown format: 3" for float or compressed WAVs.
        if "unknown format" in str(e):
            raise RecordingError(f"{path}: unsupported WAV encoding ({e}); use 16-bit PCM") from None
        raise RecordingError(f"{path}: not a WAV file ({e})") from None
    except EOFError:
        raise RecordingError(f"{path}: not a WAV file (header is truncated)") from None


def _check_format(path: Path, w: wave.Wave_read) -> None:
    if w.getsampwidth() != 2:
        raise RecordingError(f"{path}: unsupported WAV encoding ({8 * w.getsampwidth()}-bit); use 16-bit PCM")
    if w.getnchannels() not in (1, 2):
        raise RecordingError(f"{path}: {w.getnchannels()} channels; a recording has 1 or 2")
    if w.getframerate() < 8000:
        raise RecordingError(f"{path}: sample rate {w.getframerate()} Hz is too low for speech")


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Linear interpolation to SAMPLE_RATE: adequate for speech recognition and VAD."""
    if rate == SAMPLE_RATE:
        return samples
    n_out = int(round(len(samples) * SAMPLE_RATE / rate))
    positions = np.arange(n_out) * (rate / SAMPLE_RATE)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.int16)


def read_recording(path: str | Path) -> Recording:
    """Read and validate a WAV; raise RecordingError with a message a user can act on."""
    path = Path(path)
    with _open(path) as w:
        _check_format(path, w)
        declared = w.getnframes()
        n_channels, rate = w.getnchannels(), w.getframerate()
        raw = w.readframes(declared)
    frames = len(raw) // (2 * n_channels)
    if declared == 0 or frames == 0:
        raise RecordingError(f"{path}: the WAV holds no audio")
    if frames < declared:
        raise RecordingError(
            f"{path}: truncated: the header declares {declared / rate:.2f} s, the file holds {frames / rate:.2f} s"
        )
    interleaved = np.frombuffer(raw[: frames * 2 * n_channels], dtype="<i2").reshape(-1, n_channels)
    channels = tuple(_resample(np.ascontiguousarray(interleaved[:, c]), rate) for c in range(n_channels))
    return Recording(channels=channels, source_rate=rate)


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1], what Whisper takes."""
    return samples.astype(np.float32) / 32768.0
