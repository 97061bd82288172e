"""Storage trouble never drops a call: the recording is marked failed_storage and the call goes on."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sip_helpers import EventLog, free_udp_port, sim_ready, start_sim

from telephony import events as ev
from telephony.config import SeatConfig
from telephony.manager import SeatManager
from telephony.recording import recording_path

SEAT = "seat1"


@pytest.fixture
async def seat_with(tmp_path):
    owned = []

    async def start(recordings_dir: Path):
        cfg = SeatConfig(name=SEAT, sip_port=free_udp_port(), recordings_dir=str(recordings_dir))
        manager = SeatManager([cfg])
        await manager.start()
        log = EventLog(manager.events())
        owned.append((manager, log))
        return manager, log

    yield start
    for manager, log in owned:
        await log.aclose()
        await manager.stop()


@pytest.fixture
async def sim():
    port = free_udp_port()
    peer = start_sim(port, "--answer-after", "0", "--hangup-after", "1.5")
    peer.uri = f"sip:customer@127.0.0.1:{port}"
    await sim_ready(peer)
    yield peer
    peer.kill()


async def test_an_unusable_recordings_folder_fails_the_recording_not_the_call(seat_with, sim, tmp_path):
    not_a_folder = tmp_path / "recordings"
    not_a_folder.write_text("a file where the folder should be")
    manager, log = await seat_with(not_a_folder)
    call_id = await manager.seat(SEAT).dial(sim.uri)

    closed = await log.first(ev.RecordingClosed, call_id)
    ended = await log.first(ev.CallEnded, call_id)
    assert closed.state == "failed_storage" and closed.sha256 is None
    assert (ended.side, ended.cause) == ("customer", "normal_clearing")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_a_full_disk_mid_call_fails_the_recording_not_the_call(seat_with, sim, tmp_path):
    manager, log = await seat_with(tmp_path / "recordings")
    call_id = str(uuid.uuid4())
    path = recording_path(tmp_path / "recordings", call_id)
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/full")  # every write to the recording fails with ENOSPC

    await manager.seat(SEAT).dial(sim.uri, call_id=call_id)
    assert (await log.first(ev.RecordingStarted, call_id)).path == str(path)
    closed = await log.first(ev.RecordingClosed, call_id)
    ended = await log.first(ev.CallEnded, call_id)
    assert closed.state == "failed_storage"
    assert closed.ts < ended.ts
    assert (ended.side, ended.cause) == ("customer", "normal_clearing")
