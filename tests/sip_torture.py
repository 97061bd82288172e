"""Sends the RFC 4475 / RFC 5118 torture messages, byte for byte, to running seats and prints a JSON verdict table.

    unshare -rn python tests/sip_torture.py [--data tests/data/sip-torture] [--transports udp,tcp]

Meant to run inside a fresh network namespace (`unshare -rn`: user + network
namespace, only loopback) because the messages name hosts off this machine;
it refuses to run where any interface other than `lo` exists. It brings `lo`
up, starts one seat per transport through the real SeatManager, and for each
message: sends it, then proves the seat still answers OPTIONS with 200. The
seat handles one message at a time on one thread, so every response to the
torture message is on the wire before the probe's 200: no waiting windows.

UDP: the messages go out from 127.0.0.1:5060 and other sockets listen on the
other ports the Vias name, because a UAS sends a UDP response to the Via's
sent-by port (RFC 3261 18.2.2). TCP: one connection per message; responses
come back on it (RFC 3261 18.2.2 for reliable transports).

Inbound INVITEs from 127.0.0.1 are allowed, so they reach the call code (not
just the 403 gate); a call that starts ringing is hung up (603) before the
next message.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from telephony import events as ev
from telephony.config import SeatConfig
from telephony.manager import SeatManager

DATA = Path(__file__).resolve().parent / "data" / "sip-torture"
SEAT_PORTS = {"udp": 5080, "tcp": 5090}
SENDER_PORT = 5060
# Other sent-by ports the corpus's Vias name: UDP responses go there.
VIA_PORTS = (5050, 5070, 6050, 19823)
PROBE_TIMEOUT = 10.0
FLOOD_THREADS = 4


class NotIsolated(Exception):
    """Not inside a network namespace with loopback only."""


def isolate_check() -> None:
    """Bring lo up and make sure it is the only interface: nothing may leave this machine."""
    # if_nameindex asks the kernel about this namespace (sysfs may still show the host's).
    others = sorted({name for _, name in socket.if_nameindex()} - {"lo"})
    if others:
        raise NotIsolated(f"interfaces other than lo exist ({', '.join(others)}); run under `unshare -rn`")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)


@dataclass
class Response:
    code: int
    call_id: str
    cseq: str
    port: int  # where it arrived (our socket's port)

    def key(self) -> tuple:
        return self.code, self.call_id, self.cseq


@dataclass
class Outcome:
    file: str
    transport: str
    codes: list[int] = field(default_factory=list)
    alive: bool = False
    rang: bool = False
    closed: bool = False
    # TCP: after a dropped malformed message pjsip sometimes resets the next new connection
    # (the probe's); the retry on a fresh connection is what proves the seat alive.
    probe_resets: int = 0
    ports: list[int] = field(default_factory=list)
    error: str = ""


_HEADER = re.compile(rb"^([A-Za-z-]+)[ \t]*:[ \t]*(.*)$")


def parse_responses(data: bytes, port: int) -> tuple[list[Response], bytes]:
    """SIP responses in a byte stream (framed by Content-Length); returns them and the unparsed rest."""
    out = []
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return out, data
        lines = data[:head_end].split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            m = _HEADER.match(line)
            if m:
                name = m.group(1).lower()
                headers[{b"i": b"call-id", b"l": b"content-length"}.get(name, name)] = m.group(2).strip()
        length = int(headers.get(b"content-length", b"0") or 0)
        if len(data) < head_end + 4 + length:
            return out, data
        data = data[head_end + 4 + length:]
        first = lines[0].split(b" ", 2)
        if first[0] == b"SIP/2.0" and len(first) > 1 and first[1].isdigit():
            out.append(Response(int(first[1]), headers.get(b"call-id", b"").decode("latin-1"),
                                headers.get(b"cseq", b"").decode("latin-1"), port))


def classify(codes: list[int]) -> str:
    """One word per outcome: 'ring' (offered to the agent: 180), 'drop' (no answer) or the first final code."""
    if 180 in codes:
        return "ring"
    finals = [c for c in codes if c >= 200]
    if finals:
        return str(finals[0])
    return "drop" if not codes else "1xx"


def probe_message(transport: str, local_port: int, seat_port: int, n: int) -> bytes:
    return (
        f"OPTIONS sip:probe@127.0.0.1:{seat_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{local_port};branch=z9hG4bK-probe-{transport}-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:prober@127.0.0.1>;tag=probe{n}\r\n"
        "To: <sip:probe@127.0.0.1>\r\n"
        f"Call-ID: probe-{transport}-{n}@torture.invalid\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class UdpSender:
    """Sends from 127.0.0.1:5060 and listens on every Via port; the probe's 200 ends the wait."""

    def __init__(self, seat_port: int) -> None:
        self.seat_port = seat_port
        self.socks = []
        for port in (SENDER_PORT, *VIA_PORTS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", port))
            s.setblocking(False)
            self.socks.append(s)
        self.seen: set[tuple] = set()
        self.n = 0

    def exchange(self, message: bytes | None, out: Outcome) -> None:
        """Send the message (None: only probe) and collect every new response up to the probe's 200."""
        if message is not None:
            self.socks[0].sendto(message, ("127.0.0.1", self.seat_port))
        self.n += 1
        probe_id = f"probe-udp-{self.n}@torture.invalid"
        self.socks[0].sendto(probe_message("udp", SENDER_PORT, self.seat_port, self.n), ("127.0.0.1", self.seat_port))
        deadline = time.monotonic() + PROBE_TIMEOUT
        alive = False
        while time.monotonic() < deadline and not alive:
            for resp in self._read_all():
                if resp.call_id == probe_id:
                    alive = alive or resp.code == 200
                else:
                    self._note(resp, out)
            time.sleep(0.002)
        # The probe's 200 was sent after any response to the message: those are already queued.
        for resp in self._read_all():
            self._note(resp, out)
        out.alive = alive

    def _note(self, resp: Response, out: Outcome) -> None:
        # Late answers to earlier probes and retransmitted final responses are not this message's.
        if resp.call_id.startswith("probe-") or resp.key() in self.seen:
            return
        self.seen.add(resp.key())
        out.codes.append(resp.code)
        out.ports.append(resp.port)

    def _read_all(self) -> list[Response]:
        return [resp for s in self.socks for resp in self._read(s)]

    @staticmethod
    def _read(s: socket.socket) -> list[Response]:
        found = []
        port = s.getsockname()[1]
        while True:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                return found
            found.extend(parse_responses(data, port)[0])

    def close(self) -> None:
        for s in self.socks:
            s.close()


class TcpSender:
    """One connection per message; the probe goes over one long-lived second connection.

    Connections are paced: pjsip 2.15.1's select ioqueue has 64 slots and keeps a closed
    socket's slot for 500 ms (PJ_IOQUEUE_KEY_FREE_DELAY); opening connections faster than
    that runs the free list dry and the wheel's assert aborts the seat. That is a real
    weakness (see test_sip_torture.py::test_tcp_connection_churn...), but this run is about
    the messages, so it stays below the limit.
    """

    WINDOW_S, MAX_IN_WINDOW = 0.6, 24
    PROBES = 12
    MIN_WAIT_S = 1.0

    def __init__(self, seat_port: int) -> None:
        self.seat_port = seat_port
        self.n = 0
        self.recent: collections.deque[float] = collections.deque()
        self.probe_conn: socket.socket | None = None

    def _connect(self) -> socket.socket:
        while len(self.recent) >= self.MAX_IN_WINDOW:
            wait = self.recent[0] + self.WINDOW_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.recent.popleft()
        self.recent.append(time.monotonic())
        return socket.create_connection(("127.0.0.1", self.seat_port), timeout=PROBE_TIMEOUT)

    def exchange(self, message: bytes | None, out: Outcome) -> None:
        if message is None:
            out.alive = self._probe(out)
            return
        conn = self._connect()
        try:
            try:
                conn.sendall(message)
            except (ConnectionResetError, BrokenPipeError):
                out.closed = True
            # The seat accepts a new connection in one poll and reads it in a later one, while the probe
            # connection is read at once, so the message is read some probe round trips later: wait for
            # PROBES answered round trips and at least MIN_WAIT_S (PROBES alone once missed a 200 on a
            # loaded CI machine, where UDP and TCP run at once). Once an answer shows up, two more
            # rounds catch any answer sent in the same step (100 + 180).
            data, out.alive, extra = b"", True, None
            until = time.monotonic() + self.MIN_WAIT_S
            rounds = 0
            while rounds < self.PROBES or (time.monotonic() < until and extra is None):
                rounds += 1
                if rounds > self.PROBES:
                    time.sleep(0.02)
                out.alive = self._probe(out)
                chunk, closed = self._drain(conn)
                data += chunk
                out.closed = out.closed or closed
                if not out.alive or extra == 0:
                    break
                if data and extra is None:
                    extra = 2
                elif extra:
                    extra -= 1
            out.codes += [r.code for r in parse_responses(data, 0)[0]]
        finally:
            conn.close()

    def _probe(self, out: Outcome) -> bool:
        """OPTIONS on the probe connection; reconnect once if the seat closed it (counted)."""
        for _ in range(2):
            if self.probe_conn is None:
                self.probe_conn = self._connect()
            try:
                if self._probe_once(self.probe_conn):
                    return True
            except (ConnectionResetError, BrokenPipeError, TimeoutError):
                pass
            self.close()
            out.probe_resets += 1
        return False

    def _probe_once(self, s: socket.socket) -> bool:
        self.n += 1
        s.sendall(probe_message("tcp", s.getsockname()[1], self.seat_port, self.n))
        data = b""
        want = f"probe-tcp-{self.n}@torture.invalid"
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            chunk = s.recv(65535)
            if not chunk:
                return False
            data += chunk
            responses, _ = parse_responses(data, 0)
            if any(r.code == 200 and r.call_id == want for r in responses):
                return True
        return False

    def close(self) -> None:
        if self.probe_conn is not None:
            self.probe_conn.close()
            self.probe_conn = None

    @staticmethod
    def _drain(conn: socket.socket) -> tuple[bytes, bool]:
        """What the seat has sent on the message's connection so far, and whether it closed it."""
        conn.setblocking(False)
        data, closed = b"", False
        try:
            while chunk := conn.recv(65535):
                data += chunk
            closed = True
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed = True
        return data, closed


async def hang_up_ringing(manager: SeatManager, seat: str) -> bool:
    """Refuse (603) any call the message started, and wait until the seat has let it go.

    Asks the seat itself (ping lists its calls): its events may still be on their way here.
    """
    client = manager.seat(seat)
    ringing = (await client.ping())["calls"]
    for call_id in ringing:
        with contextlib.suppress(Exception):
            await client.hangup(call_id)
    deadline = time.monotonic() + PROBE_TIMEOUT
    while ringing and (await client.ping())["calls"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return bool(ringing)


async def collect(source, into: list) -> None:
    async for event in source:
        into.append(event)


def transaction_key(message: bytes) -> tuple[bytes, bytes] | None:
    """(method, top Via branch): what pjsip matches a server transaction on (it ignores the sent-by)."""
    method = message.split(b" ", 1)[0]
    if method == b"SIP/2.0":
        return None
    branch = re.search(rb"branch=([^;,\s]+)", message, re.IGNORECASE)
    return method, branch.group(1) if branch else b""


def rounds(files: list[Path]) -> list[list[Path]]:
    """Split the corpus so no two messages in one seat's life share a transaction key.

    The corpus reuses branches (7 INVITEs carry z9hG4bKkdjuw): sent to one seat, a later one
    would be absorbed as a retransmission of an earlier transaction still in its 32 s
    Timer H/J window, and the verdict would be that of the earlier message.
    """
    keys: list[set] = []
    groups: list[list[Path]] = []
    for path in files:
        key = transaction_key(path.read_bytes())
        n = next((i for i, used in enumerate(keys) if key is None or key not in used), len(keys))
        if n == len(keys):
            keys.append(set())
            groups.append([])
        keys[n].add(key)
        groups[n].append(path)
    return groups


async def run_transport(transport: str, files: list[Path], recordings: str, log_level: int) -> list[Outcome]:
    outcomes = []
    for n, group in enumerate(rounds(files)):
        cfg = SeatConfig(name=f"torture-{transport}", sip_port=SEAT_PORTS[transport] + n, recordings_dir=recordings,
                         transport=transport, allowed_peers=("127.0.0.1",), pjsip_log_level=log_level)
        outcomes += await run_round(cfg, group)
    return outcomes


async def run_round(cfg: SeatConfig, files: list[Path]) -> list[Outcome]:
    manager = SeatManager([cfg])
    await manager.start()
    events: list[ev.Event] = []
    collector = asyncio.create_task(collect(manager.events(), events))
    sender = UdpSender(cfg.sip_port) if cfg.transport == "udp" else TcpSender(cfg.sip_port)
    outcomes = []
    try:
        for path in files:
            events.clear()
            out = await exchange_one(manager, cfg.name, sender, path, events)
            outcomes.append(out)
            if not out.alive:
                # Wait for the manager's restart so one bad message does not mask the verdicts of the rest.
                await _until_back(manager, cfg.name)
    finally:
        sender.close()
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        await manager.stop()
    return outcomes


async def exchange_one(manager: SeatManager, seat: str, sender, path: Path, events: list) -> Outcome:
    out = Outcome(f"{path.parent.name}/{path.name}", "udp" if isinstance(sender, UdpSender) else "tcp")
    try:
        await asyncio.to_thread(sender.exchange, path.read_bytes(), out)
        out.rang = await hang_up_ringing(manager, seat)
        if out.rang:
            # Collect the 603 that hanging up sent (UDP), and prove the seat is still fine after it.
            alive = out.alive
            await asyncio.to_thread(sender.exchange, None, out)
            out.alive = alive and out.alive
    except Exception as e:  # noqa: BLE001 - one broken exchange is a verdict, not a crash of the run
        out.error = f"{type(e).__name__}: {e}"
    if any(isinstance(e, ev.SeatCrashed) for e in events):
        out.alive, out.error = False, out.error or "seat process died"
    return out


async def _until_back(manager: SeatManager, name: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            await manager.seat(name).ping()
            return
        await asyncio.sleep(0.1)


async def churn(connections: int) -> dict:
    """Open and close TCP connections to a TCP seat as fast as possible, then probe it."""
    with tempfile.TemporaryDirectory(prefix="torture-rec") as rec:
        cfg = SeatConfig(name="churn-tcp", sip_port=SEAT_PORTS["tcp"], recordings_dir=rec, transport="tcp")
        manager = SeatManager([cfg])
        await manager.start()
        events: list[ev.Event] = []
        collector = asyncio.create_task(collect(manager.events(), events))

        def flood(first: int) -> None:
            # Each connection asks OPTIONS and waits for the 200, like a monitoring probe would.
            for n in range(first, connections, FLOOD_THREADS):
                try:
                    with socket.create_connection(("127.0.0.1", cfg.sip_port), timeout=2) as s:
                        s.sendall(probe_message("tcp", s.getsockname()[1], cfg.sip_port, n))
                        s.recv(65535)
                except OSError:
                    return  # the seat is gone

        try:
            # Several clients at once, so the rate does not hang on one round trip (a loaded machine).
            await asyncio.gather(*(asyncio.to_thread(flood, i) for i in range(FLOOD_THREADS)))
            await _until_back(manager, cfg.name)
            out = Outcome("churn", "tcp")
            sender = TcpSender(cfg.sip_port)
            await asyncio.to_thread(sender.exchange, None, out)
            sender.close()
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
            await manager.stop()
    crashed = [e.exit_code for e in events if isinstance(e, ev.SeatCrashed)]
    return {"connections": connections, "crashed": crashed, "alive_after": out.alive}


def corpus_files(data: Path) -> list[Path]:
    return sorted(data.glob("rfc4475/*.dat")) + sorted(data.glob("rfc5118/*.dat"))


async def run(data: Path, transports: list[str], only: str = "", log_level: int = 1) -> list[Outcome]:
    files = [f for f in corpus_files(data) if not only or f.name in only.split(",")]
    with tempfile.TemporaryDirectory(prefix="torture-rec") as rec:
        # The transports use separate seats, ports and senders: run them side by side.
        per_transport = await asyncio.gather(*(run_transport(t, files, rec, log_level) for t in transports))
    return [outcome for outcomes in per_transport for outcome in outcomes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/sip_torture.py", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--transports", default="udp,tcp")
    parser.add_argument("--only", default="", help="comma-separated file names (debugging)")
    parser.add_argument("--pjsip-log-level", type=int, default=1)
    parser.add_argument("--churn", type=int, default=0, help="instead: open/close this many TCP connections")
    args = parser.parse_args(argv)
    try:
        isolate_check()
    except (NotIsolated, subprocess.CalledProcessError, OSError) as e:
        print(json.dumps({"error": f"cannot isolate the network: {e}"}))
        return 3
    if args.churn:
        print(json.dumps({"churn": asyncio.run(churn(args.churn))}))
        return 0
    outcomes = asyncio.run(run(args.data, args.transports.split(","), args.only, args.pjsip_log_level))
    print(json.dumps({"results": [{**vars(o), "verdict": classify(o.codes)} for o in outcomes]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
