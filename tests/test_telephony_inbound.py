"""Inbound INVITEs: only configured peers reach a seat; everyone else gets 403 and nothing else happens."""

from __future__ import annotations

import pytest
from sip_helpers import EventLog, free_udp_port, start_sipp_uac, wait_until

from telephony import events as ev
from telephony.config import SeatConfig
from telephony.manager import SeatManager

SEAT = "seat1"


async def start_seat(tmp_path, allowed_peers: tuple[str, ...], inbound_numbers: tuple[str, ...]):
    cfg = SeatConfig(name=SEAT, sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"),
                     allowed_peers=allowed_peers, inbound_numbers=inbound_numbers)
    manager = SeatManager([cfg])
    await manager.start()
    return manager, cfg.sip_port


@pytest.fixture
async def seat_factory(tmp_path):
    owned = []

    async def make(allowed_peers: tuple[str, ...], inbound_numbers: tuple[str, ...] = ()):
        manager, port = await start_seat(tmp_path, allowed_peers, inbound_numbers)
        log = EventLog(manager.events())
        owned.append((manager, log))
        return manager, log, port

    yield make
    for manager, log in owned:
        await log.aclose()
        await manager.stop()


async def test_invite_from_an_unlisted_peer_gets_403_and_rings_no_one(seat_factory):
    manager, log, port = await seat_factory(allowed_peers=("192.0.2.10",))
    sipp = start_sipp_uac(port, free_udp_port())
    try:
        rejected = await log.first(ev.IncomingRejected)
        assert rejected.sip_code == 403 and rejected.source.startswith("127.0.0.1:")
        await wait_until(lambda: sipp.proc.poll() is not None, what="SIPp to give up")
        assert sipp.proc.returncode != 0  # its scenario expected a 200
        assert not log.of(ev.CallStarted)
        assert (await manager.seat(SEAT).ping())["rejected_incoming"] == 1
    finally:
        sipp.kill()


async def test_invite_for_a_number_the_seat_does_not_serve_gets_403(seat_factory):
    manager, log, port = await seat_factory(allowed_peers=("127.0.0.1",), inbound_numbers=("+862150001000",))
    sipp = start_sipp_uac(port, free_udp_port())  # SIPp calls "service"
    try:
        rejected = await log.first(ev.IncomingRejected)
        assert rejected.sip_code == 403 and "service@" in rejected.to_uri
        assert not log.of(ev.CallStarted)
    finally:
        sipp.kill()


async def test_invite_from_an_allowed_peer_rings_and_can_be_answered(seat_factory):
    manager, log, port = await seat_factory(allowed_peers=("127.0.0.1",), inbound_numbers=("service",))
    sipp = start_sipp_uac(port, free_udp_port())
    try:
        started = await log.first(ev.CallStarted)
        assert started.direction == "inbound"
        await manager.seat(SEAT).answer(started.call_id)
        await log.first(ev.CallAnswered, started.call_id)
        ended = await log.first(ev.CallEnded, started.call_id)
        assert (ended.side, ended.cause) == ("customer", "normal_clearing")
        await wait_until(lambda: sipp.proc.poll() is not None, what="SIPp to finish")
        assert sipp.proc.returncode == 0
    finally:
        sipp.kill()
