"""Supervisor listen latency: an RTP packet entering the seat -> its frame leaving the WebSocket.

    .venv/bin/python bench/listen_latency.py [--listeners 1,10,50] [--seconds 20] [--section audio]

Runs as root (the packet sniffer needs a raw socket on the loopback interface).

The real service runs in a child process (bench/_listen_service.py: embedded PostgreSQL, SeatService
with one seat, the aiohttp app); a telephony.sim customer loops a WAV of clicks (a 5 ms 1 kHz burst
every 1 s, PCMU, so a burst survives the codec and is easy to spot in the G.711 bytes). This process:

- sniffs the loopback interface: the kernel's receive timestamp of each RTP packet to the seat's
  RTP ports whose payload starts a burst ("the packet entering the seat");
- opens N WebSocket listeners on /api/v1/supervisor/calls/<id>/audio (one supervisor login, this
  site's Origin) and timestamps each customer frame that starts a burst when it arrives ("leaving
  the WebSocket": on loopback the two are the same moment, give or take the client's own loop);
- pairs each listener's burst with the packet burst before it: latency = frame time - packet time.

Both clocks are CLOCK_REALTIME of one machine. The path measured: the seat's jitter buffer and
conference bridge tick, the media link to the service, the fan-out to N listener queues, the
WebSocket send. Goal (issue #7): p95 <= 60 ms. The baseline for the ratios is the same path with one
listener, measured in the same run. Also printed: the time from the WebSocket handshake to the first
audio frame ("listening starts within 1 s").

Sections: `audio` (this). Another section (the live transcript's text lag) registers itself with
`section("text")` in a module imported here, or lives in its own script; `--section` picks which run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RATE = 16_000
CLICK_EVERY_S = 1.0  # wide apart, so a late frame still pairs with its own packet
QUIET_S = 0.25  # a burst starts after at least this much quiet
LOUD = 4000  # |sample| of a burst (they peak at 16000; silence and PCMU noise stay far below)
RTP_PORT = 41_000
RTP_PORTS = 8
RECORD = 641
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python 3.11 does not name it

SECTIONS: dict[str, Callable[[argparse.Namespace], Awaitable[None]]] = {}


def section(name: str):
    """Register a benchmark section: async fn(args) that prints its own figures."""
    def add(fn):
        SECTIONS[name] = fn
        return fn
    return add


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def click_wav(path: Path, seconds: float = 5.0) -> Path:
    samples = np.zeros(int(seconds * RATE), np.int16)
    burst = (16000 * np.sin(2 * np.pi * 1000 * np.arange(80) / RATE)).astype(np.int16)
    for at in np.arange(0.1, seconds, CLICK_EVERY_S):
        samples[int(at * RATE):int(at * RATE) + len(burst)] = burst
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


# --- the RTP side ---------------------------------------------------------------------------

class RtpSniffer(threading.Thread):
    """Kernel receive times (SO_TIMESTAMPNS) of RTP packets to the seat that start a burst."""

    def __init__(self, ports: range) -> None:
        super().__init__(daemon=True, name="rtp-sniffer")
        self.ports = ports
        self.onsets: list[float] = []
        self.packets = 0
        self._last_loud = 0.0
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.5)
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(2048, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    at = sec + nsec / 1e9
            # loopback frames carry a 14-byte Ethernet header; incoming packets are seen once
            payload = self._rtp_payload(data[14:])
            if payload is not None:
                self.packets += 1
                self._look(payload, at)

    def _rtp_payload(self, ip: bytes) -> bytes | None:
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            return None
        udp = ip[(ip[0] & 0x0F) * 4:]
        if struct.unpack("!H", udp[2:4])[0] not in self.ports:
            return None
        rtp = udp[8:]
        if len(rtp) < 12 or rtp[0] >> 6 != 2 or rtp[1] & 0x7F != 0:  # RTP v2, PCMU
            return None
        return rtp[12 + 4 * (rtp[0] & 0x0F):]

    def _look(self, payload: bytes, at: float) -> None:
        # G.711 u-law: the byte's complemented low 7 bits grow with loudness; exponent 6-7 is |s| >= ~4000
        loud = any(((~b) & 0x7F) >> 4 >= 6 for b in payload)
        if loud:
            if at - self._last_loud > QUIET_S:
                self.onsets.append(at)
            self._last_loud = at

    def stop(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.sock.close()


# --- the WebSocket side ---------------------------------------------------------------------

class WsListener:
    def __init__(self) -> None:
        self.onsets: list[float] = []
        self.first_frame_s: float | None = None
        self.frames = 0
        self._last_loud = 0.0

    async def run(self, session: aiohttp.ClientSession, url: str, origin: str) -> None:
        """Until cancelled (kept cheap: the clients share this process with the sniffer's timestamps)."""
        started = time.monotonic()
        async with session.ws_connect(url, headers={"Origin": origin}, compress=0) as ws:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self._frames(msg.data, time.time(), started)

    def _frames(self, data: bytes, at: float, started: float) -> None:
        if self.first_frame_s is None:
            self.first_frame_s = time.monotonic() - started
        for offset in range(0, len(data) - RECORD + 1, RECORD):
            self.frames += 1
            if data[offset] != 0:
                continue  # agent side: silent in this call
            if _peak(data[offset + 1:offset + RECORD]) >= LOUD:
                if at - self._last_loud > QUIET_S:
                    self.onsets.append(at)
                self._last_loud = at


try:
    import audioop  # C and fast; in the standard library up to Python 3.12

    def _peak(pcm: bytes) -> int:
        return audioop.max(pcm, 2)
except ImportError:  # Python 3.13+
    def _peak(pcm: bytes) -> int:
        return int(np.abs(np.frombuffer(pcm, np.int16).astype(np.int32)).max())


def latencies(rtp: list[float], ws: list[float]) -> list[float]:
    """Each WebSocket burst against the packet burst just before it (bursts are 1 s apart)."""
    out = []
    for at in ws:
        before = [r for r in rtp if r <= at]
        if before and at - before[-1] < CLICK_EVERY_S * 0.8:
            out.append((at - before[-1]) * 1000)
    return out


async def _login(session: aiohttp.ClientSession, base: str, ready: dict) -> None:
    async with session.post(f"{base}/api/v1/session", json={"username": ready["username"],
                                                             "password": ready["password"]}) as resp:
        resp.raise_for_status()


async def measure(base: str, call_id: str, listeners: int, seconds: float, sniffer: RtpSniffer,
                  ready: dict) -> dict:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        await _login(session, base, ready)
        url = f"{base.replace('http', 'ws', 1)}/api/v1/supervisor/calls/{call_id}/audio"
        clients = [WsListener() for _ in range(listeners)]
        tasks = [asyncio.create_task(c.run(session, url, base)) for c in clients]
        await asyncio.sleep(1.0)  # all connected, the jitter buffers settled
        since = time.time()
        load_before = loadavg()
        await asyncio.sleep(seconds)
        until = time.time()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    rtp = [t for t in sniffer.onsets if since - 1 <= t <= until]
    lat = [x for c in clients for x in latencies(rtp, [t for t in c.onsets if since <= t <= until])]
    bursts = sum(1 for t in rtp if since <= t <= until)
    firsts = [c.first_frame_s for c in clients if c.first_frame_s is not None]
    return {"listeners": listeners, "n": len(lat), "expected": bursts * listeners, "p50": pct(lat, 50),
            "p95": pct(lat, 95), "p99": pct(lat, 99), "max": max(lat, default=float("nan")),
            "first_frame_p95_ms": pct([f * 1000 for f in firsts], 95), "load": load_before}


@section("audio")
async def audio_section(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        sys.exit("bench/listen_latency.py needs root: the RTP sniffer opens a raw socket on lo")
    sniffer = RtpSniffer(range(RTP_PORT, RTP_PORT + RTP_PORTS))
    folder = Path(tempfile.mkdtemp(prefix="listenbench"))
    wav = click_wav(folder / "clicks.wav")
    service = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_listen_service.py"), "--play", str(wav),
                                "--rtp-port", str(RTP_PORT)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    sniffer.start()
    try:
        line = await asyncio.get_running_loop().run_in_executor(None, service.stdout.readline)
        if not line:
            sys.exit("the service helper did not start (see its errors above)")
        ready = json.loads(line)
        base = f"http://127.0.0.1:{ready['port']}"
        print(f"machine: {os.cpu_count()} CPUs, load before: {loadavg()}")
        print("latency RTP packet in -> WebSocket frame out, ms (bursts every 1 s, all listeners pooled)")
        print(f"{'listeners':>9} {'samples':>9} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} "
              f"{'p95/1':>6} {'first frame p95':>16}  load")
        baseline = None
        for n in args.listeners:
            r = await measure(base, ready["call_id"], n, args.seconds, sniffer, ready)
            baseline = baseline or r["p95"]
            print(f"{n:>9} {r['n']:>4}/{r['expected']:<4} {r['p50']:>7.1f} {r['p95']:>7.1f} {r['p99']:>7.1f} "
                  f"{r['max']:>7.1f} {r['p95'] / baseline:>6.2f} {r['first_frame_p95_ms']:>13.0f} ms  {r['load']}")
        print(f"goal: p95 <= 60 ms; RTP packets seen: {sniffer.packets}; load after: {loadavg()}")
    finally:
        sniffer.stop()
        service.stdin.close()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listeners", default="1,10,50", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per listener count")
    p.add_argument("--section", default="all", help=f"which section: all or one of {', '.join(SECTIONS)}")
    return p.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    names = list(SECTIONS) if args.section == "all" else [args.section]
    for name in names:
        if name not in SECTIONS:
            sys.exit(f"unknown section {name!r}; have {', '.join(SECTIONS)}")
        print(f"== {name} ==")
        await SECTIONS[name](args)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
