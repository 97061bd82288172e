"""The seat manager: a seat killed mid-call is reported at once, restarted, and its recording kept."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import wave

import pytest
from sip_helpers import channel_rms, free_udp_port, sim_ready, speech_wav, start_sim, wait_until

from telephony import events as ev
from telephony.recording import HEADER_BYTES, repair_wav

SEAT = "seat1"
BYTES_PER_SECOND = 16_000 * 4


@pytest.fixture
async def talking_sim(tmp_path):
    voice = speech_wav(tmp_path, "I would like to order two boxes of green tea, please.", "customer")
    port = free_udp_port()
    sim = start_sim(port, "--answer-after", "0", "--play", str(voice), "--loop")
    sim.uri = f"sip:customer@127.0.0.1:{port}"
    await sim_ready(sim)
    yield sim
    sim.kill()


async def test_killed_seat_reports_its_calls_restarts_and_keeps_the_audio(seat, talking_sim):
    manager, log = seat
    old_pid = manager.pid(SEAT)
    call_id = await manager.seat(SEAT).dial(talking_sim.uri)
    path = (await log.first(ev.RecordingStarted, call_id)).path
    await wait_until(lambda: os.path.getsize(path) > HEADER_BYTES + 2 * BYTES_PER_SECOND, what="2 s of recording")

    killed_at = time.time()
    on_disk_at_kill = os.path.getsize(path)
    os.kill(old_pid, signal.SIGKILL)

    crashed = await log.first(ev.SeatCrashed, timeout=5)
    assert crashed.ts - killed_at < 1.0, "the crash must be noticed within 1 s"
    assert crashed.call_ids == (call_id,)
    assert crashed.recordings == (path,)
    assert crashed.exit_code == -signal.SIGKILL

    await wait_until(lambda: manager.restarts(SEAT) == 1, timeout=10, what="the seat to restart")
    assert manager.pid(SEAT) != old_pid
    assert (await manager.seat(SEAT).ping())["calls"] == []

    kept = repair_wav(path)
    assert kept >= (on_disk_at_kill - HEADER_BYTES) / BYTES_PER_SECOND - 0.01
    with wave.open(path) as w:
        assert w.getnframes() / 16_000 == pytest.approx(kept)
    _, customer = channel_rms(path)
    assert customer > 300


async def test_hung_seat_is_killed_reported_and_restarted(seat, talking_sim):
    manager, log = seat
    old_pid = manager.pid(SEAT)
    call_id = await manager.seat(SEAT).dial(talking_sim.uri)
    path = (await log.first(ev.RecordingStarted, call_id)).path

    stopped_at = time.time()
    os.kill(old_pid, signal.SIGSTOP)  # alive but silent, like a pjsua2 call blocking the seat's one thread

    # A hang is seen within ping_interval + ping_deadline + ping_confirm; 2 s more allows for a loaded machine.
    allowed = manager.ping_interval + manager.ping_deadline + manager.ping_confirm + 2
    crashed = await log.first(ev.SeatCrashed, timeout=allowed + 5)
    assert crashed.ts - stopped_at < allowed, "a hung seat must be noticed like a dead one"
    assert crashed.call_ids == (call_id,)
    assert crashed.recordings == (path,)
    assert crashed.exit_code == -signal.SIGKILL

    await wait_until(lambda: manager.restarts(SEAT) == 1, timeout=10, what="the seat to restart")
    assert manager.pid(SEAT) != old_pid
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    assert (await manager.seat(SEAT).ping())["calls"] == []


async def test_busy_seat_on_a_loaded_machine_is_not_killed(seat, talking_sim):
    manager, log = seat
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        call_id = await manager.seat(SEAT).dial(talking_sim.uri)
        await log.first(ev.RecordingStarted, call_id)
        await asyncio.sleep(3)  # some fifteen heartbeats with every core taken
        await manager.seat(SEAT).hangup(call_id)
        await log.first(ev.CallEnded, call_id)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert log.of(ev.SeatCrashed) == []
    assert manager.restarts(SEAT) == 0


async def test_a_blocked_service_loop_does_not_kill_a_healthy_seat(seat, talking_sim):
    """A long synchronous call in the service (here 1.5 ping deadlines) leaves the seat's ping reply unread."""
    manager, log = seat
    old_pid = manager.pid(SEAT)
    call_id = await manager.seat(SEAT).dial(talking_sim.uri)
    await log.first(ev.RecordingStarted, call_id)
    await asyncio.sleep(manager.ping_interval + 0.1)  # a ping is in flight
    time.sleep(1.5 * manager.ping_deadline)  # blocks the loop the manager runs on
    await asyncio.sleep(manager.ping_interval + manager.ping_confirm + 1)
    assert log.of(ev.SeatCrashed) == [], "the seat answered; only the service was slow to read it"
    assert manager.pid(SEAT) == old_pid
    await manager.seat(SEAT).hangup(call_id)
    await log.first(ev.CallEnded, call_id)


async def test_an_unknown_seat_is_unavailable(seat):
    from telephony.client import SeatUnavailable

    manager, _ = seat
    with pytest.raises(SeatUnavailable):
        manager.seat("nope")
