"""How many concurrent recorded calls this machine holds, seats against SIPp.

    .venv/bin/python bench/concurrent_calls.py [--quick] [--steps 20,40,60] [--hold 8] [--cps 25] [--budget 240]

Seat processes (telephony.manager.SeatManager, 4 calls each: the wheel's
PJSUA_MAX_CALLS) dial one SIPp process running its built-in `uas` scenario with
`-rtp_echo`, so every call carries RTP both ways and every call is recorded.
The number of concurrent calls ramps up step by step (20, 40, 60, ...): dial
them at --cps calls a second, hold them --hold seconds, hang up. A step
passes when every call was answered, call setup (dial command to 200 OK
confirmed at the seat) has p95 under 100 ms, and no recording lost a frame:
the tap dropped nothing and each WAV holds as many 20 ms frames as the call
lasted (within 3 frames for the start and stop ticks). The ramp stops at the
first failing step or when the time budget is spent.

Baseline: the same number of calls (the largest passing step) with seats that
do not record (bench/_seat_no_recording.py: same endpoint, bridge and RTP,
without the two recording taps per call and the WAV writing). Printed: seat
CPU per call (% of one core) and resident memory per call, for both, the
ratio ours/baseline, and SIPp's own CPU. CPU and memory come from /proc.
The machine's load (from /proc/loadavg) is printed before and after: the
figures are only comparable on an otherwise idle machine. On a busy one the
seats' bridge clock threads starve first and recordings lose frames (ticks
that never happen) long before CPU per call says the seats are full; run it
under `nice -n -10` to see what the seats hold when they get the CPU first,
as a telephony host would arrange.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telephony import events as ev  # noqa: E402
from telephony.config import SeatConfig  # noqa: E402
from telephony.endpoint import MAX_CALLS  # noqa: E402
from telephony.frames import FRAME_MS  # noqa: E402
from telephony.manager import SeatManager  # noqa: E402

SETUP_P95_LIMIT_MS = 100.0
FRAME_TOLERANCE = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
SEATS_PER_MANAGER = 10


# --- /proc -------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the far end ---------------------------------------------------------------

class Sipp:
    """SIPp's built-in uas with RTP echo: answers every INVITE at once and echoes the RTP it gets."""

    def __init__(self) -> None:
        sipp = shutil.which("sipp")
        if sipp is None:
            sys.exit("sipp is not installed (Debian package sip-tester)")
        self.port = free_udp_port()
        media = free_udp_port()
        self.proc = subprocess.Popen(
            [sipp, "-sn", "uas", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(self.port), "-mp", str(media),
             "-rtp_echo", "-nostdin", "-max_socket", "1024"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.uri = f"sip:service@127.0.0.1:{self.port}"

    async def ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            if self.proc.poll() is not None:
                sys.exit(f"sipp exited with {self.proc.returncode}")
            await asyncio.sleep(0.05)
        sys.exit("sipp did not bind its port")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


# --- the seats ------------------------------------------------------------------

class NoRecordingSeatManager(SeatManager):
    seat_command = (sys.executable, str(ROOT / "bench" / "_seat_no_recording.py"))


class Fleet:
    """Seat processes in batches of managers (one manager per batch), with one merged event list."""

    def __init__(self, recordings: str, recording: bool) -> None:
        self.recordings = recordings
        self.manager_class = SeatManager if recording else NoRecordingSeatManager
        self.managers: list[SeatManager] = []
        self.seats: list[tuple[SeatManager, str]] = []
        self.events: list[ev.Event] = []
        self._collectors: list[asyncio.Task] = []

    async def grow(self, count: int) -> None:
        while len(self.seats) < count:
            batch = min(SEATS_PER_MANAGER, count - len(self.seats))
            base = len(self.seats)
            configs = [SeatConfig(name=f"bench{base + i + 1}", sip_port=free_udp_port(),
                                  recordings_dir=self.recordings) for i in range(batch)]
            manager = self.manager_class(configs, start_timeout=60)
            await manager.start()
            self.managers.append(manager)
            self.seats += [(manager, cfg.name) for cfg in configs]
            self._collectors.append(asyncio.create_task(self._collect(manager)))

    async def _collect(self, manager: SeatManager) -> None:
        async for event in manager.events():
            self.events.append(event)

    def pids(self) -> list[int]:
        return [pid for manager, name in self.seats if (pid := manager.pid(name))]

    def of(self, kind: type, call_ids: set[str]) -> dict[str, ev.Event]:
        return {e.call_id: e for e in self.events if isinstance(e, kind) and e.call_id in call_ids}

    async def stop(self) -> None:
        for task in self._collectors:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(m.stop() for m in self.managers))


# --- one step --------------------------------------------------------------------

@dataclass
class Step:
    calls: int
    recording: bool
    answered: int = 0
    failed: int = 0
    setup_ms: list[float] = field(default_factory=list)
    seat_cpu_pct: float = 0.0  # all seats, % of one core, while the calls were up
    sipp_cpu_pct: float = 0.0
    machine_busy_pct: float = 0.0  # whole machine, % of all cores
    seat_rss_mib: float = 0.0
    lost_calls: list[str] = field(default_factory=list)  # recordings that lost frames
    worst_missing_frames: int = 0
    worst_after_start: int = 0  # the same, counted from RecordingStarted: frames lost once the file was open
    tap_drops: int = 0
    note: str = ""

    @property
    def p95_ms(self) -> float:
        if len(self.setup_ms) < 2:
            return self.setup_ms[0] if self.setup_ms else math.inf
        return statistics.quantiles(self.setup_ms, n=20)[18]

    @property
    def passed(self) -> bool:
        return (self.answered == self.calls and not self.failed and self.p95_ms < SETUP_P95_LIMIT_MS
                and not self.lost_calls and not self.note)

    def per_call(self, value: float) -> float:
        return value / self.answered if self.answered else math.nan


async def run_step(fleet: Fleet, sipp: Sipp, calls: int, hold: float, cps: float) -> Step:
    step = Step(calls, fleet.manager_class is SeatManager)
    await fleet.grow(math.ceil(calls / MAX_CALLS))
    dialled: dict[str, float] = {}
    for n in range(calls):
        manager, name = fleet.seats[n // MAX_CALLS]
        started = time.time()
        try:
            dialled[await manager.seat(name).dial(sipp.uri)] = started
        except Exception as e:  # noqa: BLE001 - a refused dial is a failed call, counted below
            step.failed += 1
            step.note = f"dial failed: {e}"
        # Pace the dialling (a dialer places calls at a rate, not all in one tick).
        await asyncio.sleep(max(0.0, started + 1 / cps - time.time()))
    ids = set(dialled)
    await _until(lambda: len(fleet.of(ev.CallAnswered, ids)) + len(fleet.of(ev.CallEnded, ids)) >= len(ids), 30)
    answered = fleet.of(ev.CallAnswered, ids)
    step.answered = len(answered)
    step.failed += len(ids) - len(answered)
    step.setup_ms = sorted((answered[c].ts - dialled[c]) * 1000 for c in answered)

    pids = fleet.pids()
    cpu0 = sum(cpu_seconds(p) for p in pids), cpu_seconds(sipp.proc.pid), machine_busy(), time.monotonic()
    await asyncio.sleep(hold)
    cpu1 = sum(cpu_seconds(p) for p in pids), cpu_seconds(sipp.proc.pid), machine_busy(), time.monotonic()
    wall = cpu1[3] - cpu0[3]
    step.seat_cpu_pct = 100 * (cpu1[0] - cpu0[0]) / wall
    step.sipp_cpu_pct = 100 * (cpu1[1] - cpu0[1]) / wall
    step.machine_busy_pct = 100 * (cpu1[2][0] - cpu0[2][0]) / max(cpu1[2][1] - cpu0[2][1], 1)
    step.seat_rss_mib = sum(rss_mib(p) for p in pids)

    hangup_sent: dict[str, float] = {}
    for call_id in answered:
        manager, name = fleet.seats[list(dialled).index(call_id) // MAX_CALLS]
        hangup_sent[call_id] = time.time()
        with contextlib.suppress(Exception):
            await manager.seat(name).hangup(call_id)
    await _until(lambda: len(fleet.of(ev.CallEnded, ids)) >= len(ids), 30)
    if step.recording:
        await _until(lambda: len(fleet.of(ev.RecordingClosed, set(answered))) >= len(answered), 30)
        started = fleet.of(ev.RecordingStarted, set(answered))
        check_recordings(step, answered, started, hangup_sent, fleet.of(ev.RecordingClosed, set(answered)))
    crashed = [e for e in fleet.events if isinstance(e, ev.SeatCrashed)]
    if crashed:
        step.note = f"{len(crashed)} seat crash(es), exit codes {sorted({e.exit_code for e in crashed})}"
    fleet.events.clear()
    return step


def check_recordings(step: Step, answered: dict[str, ev.Event], started: dict[str, ev.Event],
                     hangup_sent: dict[str, float], closed: dict[str, ev.Event]) -> None:
    """Every answered call's WAV must hold a frame for every 20 ms it was up, and the taps must have dropped none.

    "Up" is counted from the answer (the seat's event) to when the hang-up was sent: the recording
    runs at least that long, so a shortfall is certain loss (closing, fsync and the checksum are not counted).
    """
    for call_id, start in answered.items():
        rec = closed.get(call_id)
        if rec is None or rec.state != "complete":
            step.lost_calls.append(call_id)
            continue
        with wave.open(rec.path) as w:
            frames = w.getnframes() * 1000 // (w.getframerate() * FRAME_MS)
        expected = int((hangup_sent[call_id] - start.ts) * 1000 // FRAME_MS)
        missing = expected - frames
        step.tap_drops += rec.lost_frames
        step.worst_missing_frames = max(step.worst_missing_frames, missing)
        if call_id in started:
            after = int((hangup_sent[call_id] - started[call_id].ts) * 1000 // FRAME_MS) - frames
            step.worst_after_start = max(step.worst_after_start, after)
        if missing > FRAME_TOLERANCE or rec.lost_frames:
            step.lost_calls.append(call_id)
        os.unlink(rec.path)


async def _until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# --- report -----------------------------------------------------------------------

def describe(step: Step) -> str:
    mark = "ok  " if step.passed else "FAIL"
    lost = f"lost-frame calls {len(step.lost_calls)} (worst {step.worst_missing_frames} frames, " \
           f"{step.worst_after_start} after the file opened, tap drops {step.tap_drops})" \
        if step.recording else "not recorded"
    return (f"{mark} {step.calls:4d} calls  answered {step.answered:4d}  setup p50 "
            f"{statistics.median(step.setup_ms) if step.setup_ms else math.nan:6.1f} ms p95 {step.p95_ms:6.1f} ms  "
            f"seats {step.seat_cpu_pct:6.1f}% cpu ({step.per_call(step.seat_cpu_pct):.2f}%/call) "
            f"{step.seat_rss_mib:7.1f} MiB ({step.per_call(step.seat_rss_mib):.1f} MiB/call)  sipp "
            f"{step.sipp_cpu_pct:5.1f}%  machine busy {step.machine_busy_pct:5.1f}%  {lost}"
            + (f"  [{step.note}]" if step.note else ""))


async def ramp(steps: list[int], hold: float, cps: float, budget: float, recording: bool) -> list[Step]:
    started = time.monotonic()
    results: list[Step] = []
    sipp = Sipp()
    with tempfile.TemporaryDirectory(prefix="bench-rec") as recordings:
        fleet = Fleet(recordings, recording)
        try:
            await sipp.ready()
            for calls in steps:
                # Rough cost of a step: dialling, holding, hanging up; stop before the budget runs out.
                if results and time.monotonic() - started + calls / cps + hold + 10 > budget:
                    print(f"     time budget ({budget:.0f} s) reached before {calls} calls", flush=True)
                    break
                step = await run_step(fleet, sipp, calls, hold, cps)
                results.append(step)
                print(describe(step), flush=True)
                if not step.passed:
                    break
        finally:
            await fleet.stop()
            sipp.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/concurrent_calls.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run: 4 and 8 calls, 3 s each")
    parser.add_argument("--steps", default="20,40,60,80,100,120,140,160,200", help="concurrent calls per step")
    parser.add_argument("--hold", type=float, default=8.0, help="seconds every call of a step stays up")
    parser.add_argument("--cps", type=float, default=25.0, help="calls dialled per second")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds the whole ramp may take")
    args = parser.parse_args(argv)
    steps = [4, 8] if args.quick else [int(s) for s in args.steps.split(",")]
    hold = 3.0 if args.quick else args.hold
    budget = 60.0 if args.quick else args.budget

    print(f"machine: {os.cpu_count()} cpus, load average {loadavg()} (before)")
    print(f"recorded calls against SIPp uas -rtp_echo; hold {hold:.0f} s, {args.cps:.0f} calls/s, "
          f"setup p95 limit {SETUP_P95_LIMIT_MS:.0f} ms")
    ours = asyncio.run(ramp(steps, hold, args.cps, budget, recording=True))
    passed = [s for s in ours if s.passed]
    best = passed[-1] if passed else None
    if best is None:
        print(f"no step passed; load average {loadavg()} (after)")
        return 1
    print(f"baseline: {best.calls} calls with seats that do not record")
    base = asyncio.run(ramp([best.calls], hold, args.cps, budget, recording=False))[0]
    print()
    print(f"most concurrent recorded calls held: {best.calls} "
          f"(setup p95 {best.p95_ms:.1f} ms, no lost recording frames)"
          + ("" if best is ours[-1] else f"; {ours[-1].calls} failed"))
    cpu, cpu0 = best.per_call(best.seat_cpu_pct), base.per_call(base.seat_cpu_pct)
    rss, rss0 = best.per_call(best.seat_rss_mib), base.per_call(base.seat_rss_mib)
    print(f"per call, recorded vs baseline (no recording): cpu {cpu:.2f}% vs {cpu0:.2f}% of a core "
          f"(ratio {cpu / cpu0:.2f}), rss {rss:.1f} vs {rss0:.1f} MiB (ratio {rss / rss0:.2f}), "
          f"setup p95 {best.p95_ms:.1f} vs {base.p95_ms:.1f} ms")
    print(f"cpu-bound estimate for {os.cpu_count()} cores: about {100 * os.cpu_count() / cpu:.0f} recorded calls "
          f"(seats only; SIPp took {best.sipp_cpu_pct:.1f}% at {best.calls} calls)")
    print(f"machine: load average {loadavg()} (after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
