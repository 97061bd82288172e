"""What a caller waiting in the inbound queue hears: hold music and spoken announcements.

Everything is made at run time, nothing is downloaded: the music is synthesised
with numpy (an arpeggiated chord progression), the announcements with espeak-ng
(as the demo trunk does), all as 16 kHz mono WAVs (the seats' bridge rate) cached
under `<data_dir>/inbound/`. A text's WAV is made again only when its text changes.
Without espeak-ng an announcement is a short chime and a warning is logged.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import wave
from pathlib import Path

import numpy as np

from telesales.speech_files import RATE, speak, write_wav

log = logging.getLogger("telesales.inbound")

POSITION_TEXT = "You are number {n} in the queue. Thank you for waiting."
OFFER_TEXT = "All our agents are still busy. To be called back instead, press 1."
CONFIRM_TEXT = "Thank you. We will call you back soon. Goodbye."
# C major, A minor, F major, G major: one bar (four arpeggiated notes) each.
_CHORDS = ((261.63, 329.63, 392.00, 523.25), (220.00, 261.63, 329.63, 440.00),
           (174.61, 220.00, 261.63, 349.23), (196.00, 246.94, 293.66, 392.00))
_NOTE_S = 0.25


def music_samples(seconds: float) -> np.ndarray:
    """Hold music: arpeggios over a soft sustained chord, about -14 dBFS, whole bars up to `seconds`."""
    bar = int(4 * _NOTE_S * RATE)
    bars = max(1, round(seconds / (4 * _NOTE_S)))
    note_n = int(_NOTE_S * RATE)
    t_note, t_bar = np.arange(note_n) / RATE, np.arange(bar) / RATE
    decay = np.exp(-t_note * 6.0)
    out = []
    for i in range(bars):
        chord = _CHORDS[i % len(_CHORDS)]
        pad = sum(np.sin(2 * np.pi * f / 2 * t_bar) for f in chord[:3]) / 3 * 0.25
        arp = np.concatenate([decay * (np.sin(2 * np.pi * f * t_note) + 0.3 * np.sin(4 * np.pi * f * t_note))
                              for f in chord]) * 0.55
        out.append(pad + arp)
    samples = np.concatenate(out)
    return (samples / np.max(np.abs(samples)) * 0.2 * 32767).astype(np.int16)


def _chime() -> np.ndarray:
    t = np.arange(int(0.6 * RATE)) / RATE
    return (8000 * np.exp(-t * 5) * np.sin(2 * np.pi * 880 * t)).astype(np.int16)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


class QueueAudio:
    """The queue's WAVs: made once per text (and music length), then reused by every call."""

    def __init__(self, folder: Path, music_seconds: float, music_file: str = "") -> None:
        self.folder = Path(folder)
        self.music_seconds = music_seconds
        self.music_file = music_file
        self._lock = asyncio.Lock()

    async def music(self) -> Path:
        if self.music_file:
            return Path(self.music_file)  # checked at start: a 16 kHz mono 16-bit WAV of the site's own
        path = self.folder / f"music-{self.music_seconds:g}s.wav"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_wav(path, music_samples(self.music_seconds))
        return path

    async def position(self, n: int) -> Path:
        return await self.speech(f"position-{n}", POSITION_TEXT.format(n=n))

    async def offer(self) -> Path:
        return await self.speech("callback-offer", OFFER_TEXT)

    async def confirm(self) -> Path:
        return await self.speech("callback-confirm", CONFIRM_TEXT)

    async def speech(self, stem: str, text: str) -> Path:
        path, marker = self.folder / f"{stem}.wav", self.folder / f"{stem}.txt"
        async with self._lock:  # two calls reaching the same position at once make the file once
            if path.exists() and marker.exists() and marker.read_text() == text:
                return path
            self.folder.mkdir(parents=True, exist_ok=True)
            if shutil.which("espeak-ng") is None or not await speak(text, path):
                log.warning("espeak-ng is missing or failed: the queue plays a chime instead of %r", text)
                write_wav(path, _chime())
                return path  # no marker: tried again once espeak-ng is there
            marker.write_text(text)
        return path

    async def prepare(self, positions: int) -> None:
        """Make the common files before the first caller needs them."""
        await self.music()
        await self.offer()
        await self.confirm()
        for n in range(1, positions + 1):
            await self.position(n)
