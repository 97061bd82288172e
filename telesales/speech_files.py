"""WAVs the service makes for itself at the seats' 16 kHz: espeak-ng speech and numpy samples.

Shared by the demo trunk, the inbound queue's announcements and the dialer's recorded prompts.
"""

from __future__ import annotations

import asyncio
import logging
import wave
from pathlib import Path

import numpy as np

log = logging.getLogger("telesales.speech_files")

RATE = 16_000  # the seats' bridge rate: a player then needs no resampling


def write_wav(path: Path, samples: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())
    tmp.replace(path)  # a half-written file never looks like a cached one


def _to_rate(path: Path) -> np.ndarray:
    """espeak-ng writes 22.05 kHz; linear interpolation to RATE is plenty for a synthetic voice."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    n_out = int(round(len(samples) * RATE / rate))
    return np.interp(np.arange(n_out) * (rate / RATE), np.arange(len(samples)), samples).astype(np.int16)


async def speak(text: str, out: Path) -> bool:
    """Say `text` into `out` (16 kHz mono); False, logged, when espeak-ng fails."""
    raw = out.with_suffix(".espeak.wav")
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng", "-w", str(raw), text, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        log.warning("espeak-ng failed", extra={"error": err.decode(errors="replace")})
        return False
    write_wav(out, _to_rate(raw))
    raw.unlink(missing_ok=True)
    return True
