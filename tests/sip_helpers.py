"""Helpers for tests that place real SIP calls over 127.0.0.1: free ports, the sim and SIPp
processes (always killed at teardown), event collection and deadline polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave
from array import array
from collections.abc import Callable
from pathlib import Path

import numpy as np

from telephony import events as ev
from telephony.frames import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
# Generous: these run on a loaded 2-core machine next to other test suites.
DEADLINE = 20.0


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 now (SIP over UDP needs nothing else)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_port_taken(port: int) -> bool:
    """True once some process (SIPp) has bound the port: the only readiness sign SIPp gives."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def wait_until(condition: Callable[[], object], timeout: float = DEADLINE, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class EventLog:
    """Collects a SeatManager's events in the background; owned and stopped by the fixture."""

    def __init__(self, source) -> None:
        self.events: list[ev.Event] = []
        self._task = asyncio.get_running_loop().create_task(self._collect(source))

    async def _collect(self, source) -> None:
        async for event in source:
            self.events.append(event)

    def of(self, kind: type[ev.Event], call_id: str | None = None) -> list:
        return [e for e in self.events if isinstance(e, kind) and (call_id is None or e.call_id == call_id)]

    async def first(self, kind: type[ev.Event], call_id: str | None = None, timeout: float = DEADLINE):
        found = await wait_until(lambda: self.of(kind, call_id), timeout, f"{kind.__name__} for {call_id}")
        return found[0]

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class PeerProcess:
    """A child process (sim or SIPp) whose stdout lines are collected by a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def reports(self) -> list[dict]:
        """The sim's JSON lines so far."""
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        out = []
        for line in self.seen:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def start_sim(port: int, *args: str) -> PeerProcess:
    return PeerProcess([sys.executable, "-m", "telephony.sim", "--port", str(port), *args])


async def sim_ready(sim: PeerProcess) -> None:
    await wait_until(lambda: any(r.get("sim") == "ready" for r in sim.reports()), what="the sim to listen")


def start_sipp_uas(port: int) -> PeerProcess:
    sipp = shutil.which("sipp") or "/usr/bin/sipp"
    return PeerProcess([sipp, "-sn", "uas", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(port), "-m", "1",
                        "-nostdin", "-timeout", "120s"])


def speech_wav(folder: Path, text: str, name: str, voice: str | None = None) -> Path:
    """16 kHz mono speech made with espeak-ng and sox (the system packages tests require)."""
    raw, out = folder / f"{name}-raw.wav", folder / f"{name}.wav"
    subprocess.run(["espeak-ng", *(["-v", voice] if voice else []), "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True, timeout=60)
    return out


def channel_rms(path: str | Path, last_seconds: float | None = None) -> tuple[float, float]:
    """RMS of the left (agent) and right (customer) channels of a 16 kHz stereo recording (or its end)."""
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16000, 2)
        if last_seconds is not None:
            w.setpos(max(w.getnframes() - int(last_seconds * 16000), 0))
        samples = array("h", w.readframes(w.getnframes()))
    return _rms(samples[0::2]), _rms(samples[1::2])


def _rms(samples: array) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0


def start_sipp_uac(target_port: int, local_port: int) -> PeerProcess:
    """SIPp's built-in caller: INVITE, waits for 200, ACK, pauses, BYE."""
    sipp = shutil.which("sipp") or "/usr/bin/sipp"
    return PeerProcess([sipp, "-sn", "uac", f"127.0.0.1:{target_port}", "-i", "127.0.0.1", "-mi", "127.0.0.1",
                        "-p", str(local_port), "-m", "1", "-nostdin", "-timeout", "120s", "-d", "500"])


def mono_rms(path: str | Path) -> float:
    """RMS of a mono WAV (the sim's recording); 0 while the file is missing or unfinished."""
    try:
        with wave.open(str(path)) as w:
            return _rms(array("h", w.readframes(w.getnframes())))
    except (OSError, EOFError, wave.Error):
        return 0.0


# --- audio checks on 16 kHz mono s16 (numpy) ------------------------------------------------

TONE_HZ = 1000


def envelope(samples: np.ndarray) -> np.ndarray:
    """RMS per 20 ms frame."""
    usable = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
    frames = samples[:usable].astype(np.float64).reshape(-1, FRAME_SAMPLES)
    return np.sqrt((frames ** 2).mean(axis=1))


def best_loop_correlation(heard: np.ndarray, played: np.ndarray) -> float:
    """Highest correlation of the heard envelope with the (looped) played envelope at any start offset."""
    looped = np.tile(played, len(heard) // len(played) + 2)
    scores = []
    for lag in range(len(played)):
        window = looped[lag:lag + len(heard)]
        scores.append(np.corrcoef(heard, window)[0, 1])
    return float(np.nanmax(scores))


def tone_share(samples: np.ndarray, hz: float = TONE_HZ) -> float:
    """Share of the signal's energy within 50 Hz of `hz`."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    return float(spectrum[np.abs(freqs - hz) < 50].sum() / max(spectrum.sum(), 1e-9))


def tone_frames(seconds: float) -> list[bytes]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2").tobytes()
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def read_wav(path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getnchannels(), w.getframerate()


def peak_tone_share(samples: np.ndarray, seconds: float = 0.5, hz: float = TONE_HZ) -> float:
    """The highest tone_share over windows of `seconds`: finds a tone burst inside other audio."""
    step = int(seconds * SAMPLE_RATE)
    windows = [samples[i:i + step] for i in range(0, len(samples) - step + 1, step // 2)]
    return max((tone_share(w, hz) for w in windows if np.abs(w).max() > 1000), default=0.0)


def best_correlation(heard: np.ndarray, played: np.ndarray) -> float:
    """Highest correlation of the played envelope with any stretch of the heard one (played once)."""
    scores = [np.corrcoef(heard[lag:lag + len(played)], played)[0, 1] for lag in range(len(heard) - len(played) + 1)]
    return float(np.nanmax(scores)) if scores else 0.0

