"""Attended transfer between real processes: the seat consults a colleague (a second sim) while the
customer (a first sim) waits on hold, then hands the customer over with REFER/Replaces, or cancels."""

from __future__ import annotations

from pathlib import Path

import pytest
from sip_helpers import mono_rms, speech_wav, wait_until

from telephony import events as ev
from telephony.protocol import CommandError

SEAT = "seat1"


@pytest.fixture(scope="module")
def colleague_voice(tmp_path_factory):
    return speech_wav(tmp_path_factory.mktemp("voices"), "Hello, this is the billing team, how can I help?", "billing")


def _said(sim, what: str) -> list[dict]:
    return [r for r in sim.reports() if r.get("sim") == what]


async def _stop(sim) -> None:
    """SIGTERM: the sim hangs up and closes its recordings (their WAV headers are written at close)."""
    sim.proc.terminate()
    await wait_until(lambda: sim.proc.poll() is not None, what="the sim to exit")


async def test_attended_transfer_hands_the_customer_to_the_consulted_colleague(seat, peers, colleague_voice, tmp_path):
    manager, log = seat
    heard = tmp_path / "customer-heard.wav"
    customer = await peers("--answer-after", "0", "--record", str(heard))
    colleague = await peers("--answer-after", "0", "--play", str(colleague_voice), "--loop")
    client = manager.seat(SEAT)
    call_id = await client.dial(customer.uri)
    await log.first(ev.CallAnswered, call_id)

    consult_id = await client.consult(call_id, colleague.uri)
    started = await log.first(ev.ConsultStarted, call_id)
    assert (started.consult_call_id, started.target) == (consult_id, colleague.uri)
    await wait_until(lambda: [e for e in log.of(ev.CallHeld, call_id) if e.held and e.by == "local"],
                     what="the customer to be put on hold")
    await log.first(ev.CallAnswered, consult_id)

    await client.complete_transfer(call_id)
    transferred = await log.first(ev.CallTransferred, call_id)
    assert (transferred.sip_code, transferred.consult_call_id) == (200, consult_id)
    assert transferred.target == colleague.uri
    ended = {e.call_id: e for e in [await log.first(ev.CallEnded, call_id), await log.first(ev.CallEnded, consult_id)]}
    assert {(e.side, e.cause) for e in ended.values()} == {("agent", "transferred")}
    assert (await log.first(ev.ConsultEnded, call_id)).outcome == "transferred"
    assert (await client.ping())["calls"] == []

    # The customer's phone followed the REFER and the colleague's phone swapped our leg for it.
    await wait_until(lambda: _said(colleague, "replaced"), what="the colleague's phone to take the new call")
    await wait_until(lambda: len(_said(customer, "answered")) == 2, what="the customer's new leg to connect")
    [new_leg] = _said(customer, "recording")
    path = Path(new_leg["path"])
    # Let the colleague talk for a second, then stop the customer's phone so its recording is written.
    await wait_until(lambda: path.exists() and path.stat().st_size > 44 + 16_000 * 2,
                     what="a second of the new leg recorded")
    await _stop(customer)
    assert mono_rms(path) > 300, "the customer does not hear the colleague after the transfer"


async def test_cancelled_consult_returns_to_the_customer(seat, peers):
    manager, log = seat
    customer = await peers("--answer-after", "0")
    colleague = await peers("--answer-after", "0")
    client = manager.seat(SEAT)
    call_id = await client.dial(customer.uri)
    await log.first(ev.CallAnswered, call_id)
    with pytest.raises(CommandError, match="no consult leg"):
        await client.complete_transfer(call_id)

    consult_id = await client.consult(call_id, colleague.uri)
    await log.first(ev.CallAnswered, consult_id)
    with pytest.raises(CommandError, match="already has a consult leg"):
        await client.consult(call_id, colleague.uri)
    await client.cancel_consult(call_id)

    consult_ended = await log.first(ev.CallEnded, consult_id)
    assert (consult_ended.side, consult_ended.cause) == ("agent", "consult_cancelled")
    assert (await log.first(ev.ConsultEnded, call_id)).outcome == "cancelled"
    await wait_until(lambda: [e.held for e in log.of(ev.CallHeld, call_id) if e.by == "local"] == [True, False],
                     what="the customer to be taken off hold")
    assert (await client.ping())["calls"] == [call_id]
    await client.hangup(call_id)
    assert (await log.first(ev.CallEnded, call_id)).cause == "normal_clearing"
