"""Stereo call recordings written from bridge frames: left = agent, right = customer.

pjsua2's own recorder is mono and only writes its WAV header when the object
is deleted, so a crash leaves an unreadable file. Here the seat writes the
interleaved 16-bit PCM itself and rewrites the header sizes at every flush
(at least twice a second): after a SIGKILL the file already holds valid audio
up to the last flush, and `repair_wav` fixes any tail written after it.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import os
import struct
import time
import uuid
from array import array
from pathlib import Path

from telephony.frames import FRAME_BYTES, SAMPLE_BYTES, SAMPLE_RATE, SILENCE

CHANNELS = 2
HEADER_BYTES = 44
BLOCK_ALIGN = CHANNELS * SAMPLE_BYTES
FLUSH_SECONDS = 0.5
# Frames a tap may hold before the oldest is dropped (5 s): the seat loop drains every ~10 ms.
TAP_FRAMES = 250


def recording_path(recordings_dir: str | Path, call_id: str, when: dt.datetime | None = None) -> Path:
    """recordings/YYYY/MM/DD/<call uuid>.wav; the name is our UUID, never anything from SIP."""
    name = str(uuid.UUID(call_id))
    when = when or dt.datetime.now(dt.UTC)
    return Path(recordings_dir) / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}" / f"{name}.wav"


def wav_header(data_bytes: int) -> bytes:
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, CHANNELS, SAMPLE_RATE,
        SAMPLE_RATE * BLOCK_ALIGN, BLOCK_ALIGN, SAMPLE_BYTES * 8, b"data", data_bytes,
    )


def interleave(left: bytes, right: bytes) -> bytes:
    out = array("h", bytes(len(left) * 2))
    out[0::2] = array("h", left)
    out[1::2] = array("h", right)
    return out.tobytes()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def duration_of(data_bytes: int) -> float:
    return data_bytes / (SAMPLE_RATE * BLOCK_ALIGN)


class StereoWavWriter:
    """Appends stereo frames; the header always describes what has been flushed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - lives as long as the call
        self._file.write(wav_header(0))
        self._pending: list[bytes] = []
        self._data_bytes = 0
        self._last_flush = time.monotonic()

    def write(self, left: bytes, right: bytes) -> None:
        self._pending.append(interleave(left, right))
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        chunk = b"".join(self._pending)
        self._pending.clear()
        self._last_flush = time.monotonic()
        if chunk:
            self._file.write(chunk)
            self._data_bytes += len(chunk)
        self._file.seek(0)
        self._file.write(wav_header(self._data_bytes))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()  # into the kernel: survives a SIGKILL of this process

    def close(self) -> tuple[str, float]:
        """Flush, fsync and close; returns (sha256, duration in seconds)."""
        try:
            self.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        return sha256_file(self.path), duration_of(self._data_bytes)

    def abandon(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


class CallRecording:
    """Pairs the agent and customer tap frames tick by tick and writes them.

    Both taps are conference-bridge ports fed in the same bridge tick, and
    a tap with nothing connected still gets an empty frame each tick, so the
    n-th frame of one side lines up with the n-th of the other (20 ms).
    """

    def __init__(self, path: str | Path) -> None:
        self.left: collections.deque = collections.deque()
        self.right: collections.deque = collections.deque()
        self.dropped = 0
        self.writer = StereoWavWriter(path)

    def push(self, side: collections.deque, frame: bytes | None) -> None:
        """Called from the bridge thread with a frame (None for an idle tick); never blocks."""
        if len(side) >= TAP_FRAMES:
            side.popleft()
            self.dropped += 1
        side.append(frame)

    def drain(self) -> None:
        for _ in range(min(len(self.left), len(self.right))):
            self.writer.write(_pcm(self.left.popleft()), _pcm(self.right.popleft()))

    def close(self) -> tuple[str, float]:
        self.drain()
        return self.writer.close()


def _pcm(frame: bytes | None) -> bytes:
    if frame is None:
        return SILENCE
    data = frame
    if len(data) != FRAME_BYTES:
        data = data[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
    return data


def repair_wav(path: str | Path) -> float:
    """Make the header of an unclosed recording match its audio; returns the duration kept."""
    path = Path(path)
    size = path.stat().st_size
    data_bytes = max(size - HEADER_BYTES, 0)
    data_bytes -= data_bytes % BLOCK_ALIGN
    with open(path, "r+b") as f:
        f.write(wav_header(data_bytes))
        f.truncate(HEADER_BYTES + data_bytes)
        f.flush()
        os.fsync(f.fileno())
    return duration_of(data_bytes)
