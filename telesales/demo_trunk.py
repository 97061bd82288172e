"""The demo trunk: `telephony.sim` run by the service as a stand-in carrier, so a newcomer can call.

With no SIP provider configured (`telephony.demo_trunk = "auto"`, no registrar,
outbound proxy or allowed peers), `telesales serve` starts the scripted peer
in its own process on `demo_trunk_port`: it rings for a second, answers, speaks
two short sentences made with espeak-ng, and hangs up. The service owns the
process: it starts it in the background (the web page does not wait for it)
and stops it at shutdown. The speech is synthesised once and cached under
`<data_dir>/demo/`; without espeak-ng the trunk plays a tone instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from telesales.settings import SettingsError
from telesales.speech_files import RATE, speak, write_wav

log = logging.getLogger("telesales.demo_trunk")

MODES = ("auto", "on", "off")
# What the demo trunk says (file stem, text); the cache is keyed by the text.
LINES = (
    ("greeting", "Hello, this is the telesales demo line. Your call is recorded."),
    ("reply", "Thank you for calling. This was a test call. Goodbye."),
)
PAUSE_S = 1.5
ANSWER_AFTER_S = 1.0
HANGUP_AFTER_S = 12.0
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DemoTrunkConfig:
    port: int
    bind_address: str
    folder: Path

    @property
    def uri(self) -> str:
        return f"sip:demo@{self.bind_address}:{self.port}"


def demo_trunk_config(settings: SimpleNamespace) -> DemoTrunkConfig | None:
    """The demo trunk to run, or None; a bad value raises SettingsError naming the key."""
    t = settings.telephony
    if t.demo_trunk not in MODES:
        raise SettingsError(f"telephony.demo_trunk: must be one of {', '.join(MODES)}, got {t.demo_trunk!r}")
    if not 1 <= t.demo_trunk_port <= 65535:
        raise SettingsError("telephony.demo_trunk_port: must be a port number")
    if t.demo_trunk == "off":
        return None
    provider = t.registrar or t.outbound_proxy or t.allowed_peers
    if t.demo_trunk == "auto" and provider:
        log.info("demo trunk not started: a SIP provider is configured (telephony.demo_trunk = auto)")
        return None
    return DemoTrunkConfig(t.demo_trunk_port, t.bind_address, Path(settings.data_dir) / "demo")


def route_desk_to_demo(settings: SimpleNamespace, cfg: DemoTrunkConfig | None) -> None:
    """With the demo trunk up and no provider, the agent desk dials (and tests lines) through it.

    So `make run` shows the whole flow, next lead to wrap-up, with real calls. Set values win.
    """
    if cfg is None:
        return
    d = settings.dialer
    d.dial_uri = d.dial_uri or f"sip:{{number}}@{cfg.bind_address}:{cfg.port}"
    d.line_test_uri = d.line_test_uri or cfg.uri


# --- the demo audio --------------------------------------------------------------


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


async def demo_audio(folder: Path) -> list[Path]:
    """The WAVs the trunk plays, in order: made once with espeak-ng, a tone when it is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    pause = folder / "pause.wav"
    if not pause.exists():
        write_wav(pause, np.zeros(int(PAUSE_S * RATE), np.int16))
    if shutil.which("espeak-ng") is None:
        log.warning("espeak-ng is not installed: the demo trunk plays a tone instead of speech "
                    "(apt-get install espeak-ng)")
        tone = folder / "tone.wav"
        if not tone.exists():
            write_wav(tone, _tone(1.0))
        return [tone, pause, tone]
    files = []
    for stem, text in LINES:
        path, marker = folder / f"{stem}.wav", folder / f"{stem}.txt"  # marker: the text the WAV says
        if not path.exists() or not marker.exists() or marker.read_text() != text:
            if not await speak(text, path):
                path = folder / "tone.wav"
                write_wav(path, _tone(1.0))
            else:
                marker.write_text(text)
        files += [path, pause]
    return files[:-1]


# --- the process -------------------------------------------------------------------


class DemoTrunk:
    """Owns one `python -m telephony.sim` process; start() returns at once, stop() always reaps it."""

    def __init__(self, cfg: DemoTrunkConfig) -> None:
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo-trunk")

    async def _run(self) -> None:
        try:
            files = await demo_audio(self.cfg.folder)
            play = [arg for f in files for arg in ("--play", str(f))]
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "telephony.sim", "--port", str(self.cfg.port), "--bind", self.cfg.bind_address,
                "--answer-after", str(ANSWER_AFTER_S), "--hangup-after", str(HANGUP_AFTER_S), *play,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )
            await self._follow(self.proc.stdout)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the demo is optional: the service runs on without it
            log.exception("demo trunk cannot start")
            return
        code = await self.proc.wait()
        if self.ready.is_set():
            log.warning("demo trunk stopped", extra={"exit_code": code, "port": self.cfg.port})
        else:
            log.error("demo trunk could not start; is the port taken? (telephony.demo_trunk_port)",
                      extra={"exit_code": code, "port": self.cfg.port})

    async def _follow(self, stdout: asyncio.StreamReader) -> None:
        """The sim's report lines: 'ready' once, then one per call event (logged)."""
        while line := await stdout.readline():
            try:
                report = json.loads(line)
            except ValueError:
                continue
            what = report.pop("sim", "")
            if what == "ready":
                self.ready.set()
                log.info("demo trunk ready", extra={"uri": self.cfg.uri})
                print(f"demo trunk: place a test call with: telesales call {self.cfg.uri} --hangup-after 5",
                      flush=True)
            else:
                log.info(f"demo trunk call {what}", extra=report)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()  # the sim hangs up its calls and closes its endpoint on SIGTERM
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def start_demo_trunk(cfg: DemoTrunkConfig | None) -> DemoTrunk | None:
    """Start the demo trunk in the background (None: not configured); the caller stops it."""
    if cfg is None:
        return None
    trunk = DemoTrunk(cfg)
    trunk.start()
    return trunk
