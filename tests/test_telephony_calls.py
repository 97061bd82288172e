"""Real SIP calls over 127.0.0.1 between a seat process and the scripted sim (or SIPp)."""

from __future__ import annotations

import asyncio
import math
import os
import wave
from array import array

import pytest
from sip_helpers import (
    channel_rms,
    free_udp_port,
    mono_rms,
    speech_wav,
    start_sipp_uas,
    udp_port_taken,
    wait_until,
)

from telephony import events as ev
from telephony.recording import sha256_file

SEAT = "seat1"


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voices")
    return {
        "agent": speech_wav(folder, "Good morning, this is Anna from the sales team.", "agent"),
        "customer": speech_wav(folder, "Hello, yes, I am interested in the offer, please tell me more.", "customer"),
    }


async def test_answered_call_records_agent_left_and_customer_right(seat, peers, voices, tmp_path):
    manager, log = seat
    heard = tmp_path / "sim-heard.wav"
    sim = await peers("--answer-after", "0.3", "--play", str(voices["customer"]), "--hangup-after", "3",
                      "--record", str(heard))
    call_id = await manager.seat(SEAT).dial(sim.uri, play=str(voices["agent"]))

    await log.first(ev.CallRinging, call_id)
    await log.first(ev.CallAnswered, call_id)
    ended = await log.first(ev.CallEnded, call_id)
    closed = await log.first(ev.RecordingClosed, call_id)

    assert (ended.sip_code, ended.side, ended.cause) == (200, "customer", "normal_clearing")
    assert ended.quality["rx_packets"] > 100 and ended.quality["loss_percent"] == 0
    assert ended.quality["mos"] > 4
    assert closed.state == "complete" and closed.lost_frames == 0
    assert closed.sha256 == sha256_file(closed.path)
    assert 2.0 <= closed.duration_seconds <= 4.5
    assert f"/{call_id}.wav" in closed.path
    left, right = channel_rms(closed.path)
    assert left > 300, f"agent channel too quiet: {left}"
    assert right > 300, f"customer channel too quiet: {right}"
    await wait_until(lambda: any(r.get("sim") == "ended" for r in sim.reports()), what="the sim to close")
    await wait_until(lambda: mono_rms(heard) > 300, what="the sim's recording to hold the agent")


async def test_early_media_is_reported_before_the_answer(seat, peers):
    manager, log = seat
    sim = await peers("--early-media", "--answer-after", "0.5", "--hangup-after", "0.5")
    call_id = await manager.seat(SEAT).dial(sim.uri)

    early = await log.first(ev.CallEarlyMedia, call_id)
    answered = await log.first(ev.CallAnswered, call_id)
    assert (await log.first(ev.CallRinging, call_id)).sip_code == 183
    assert early.ts <= answered.ts
    await log.first(ev.CallEnded, call_id)


async def test_blind_transfer_hands_the_customer_to_the_target(seat, peers):
    manager, log = seat
    customer = await peers("--answer-after", "0")
    target = await peers("--answer-after", "0")
    client = manager.seat(SEAT)
    call_id = await client.dial(customer.uri)
    await log.first(ev.CallAnswered, call_id)

    await client.transfer(call_id, target.uri)
    transferred = await log.first(ev.CallTransferred, call_id)
    ended = await log.first(ev.CallEnded, call_id)
    assert (transferred.target, transferred.sip_code) == (target.uri, 200)
    assert (ended.side, ended.cause) == ("agent", "transferred")
    assert any(r.get("sim") == "answered" for r in target.reports())


async def test_busy_callee_ends_call_with_486(seat, peers):
    manager, log = seat
    sim = await peers("--reject", "486")
    call_id = await manager.seat(SEAT).dial(sim.uri)

    ended = await log.first(ev.CallEnded, call_id)
    assert (ended.sip_code, ended.side, ended.cause) == (486, "customer", "busy")
    assert ended.quality is None
    assert not log.of(ev.RecordingStarted, call_id)


async def test_declined_call_ends_with_603(seat, peers):
    manager, log = seat
    sim = await peers("--reject", "603", "--reject-after", "0.3")
    call_id = await manager.seat(SEAT).dial(sim.uri)

    ended = await log.first(ev.CallEnded, call_id)
    assert (ended.sip_code, ended.side, ended.cause) == (603, "customer", "rejected")


async def test_unanswered_call_is_cancelled_after_the_ring_timeout(seat, peers):
    manager, log = seat
    sim = await peers()  # rings for ever
    call_id = await manager.seat(SEAT).dial(sim.uri, ring_timeout=1.0)

    ringing = await log.first(ev.CallRinging, call_id)
    ended = await log.first(ev.CallEnded, call_id)
    assert ringing.sip_code == 180
    assert (ended.sip_code, ended.side, ended.cause) == (487, "system", "no_answer")
    await wait_until(lambda: any(r.get("sim") == "ended" and r["code"] == 487 for r in sim.reports()),
                     what="the sim to see the CANCEL")


async def test_remote_hangup_ends_call_on_the_customer_side(seat, peers):
    manager, log = seat
    sim = await peers("--answer-after", "0", "--hangup-after", "0.5")
    call_id = await manager.seat(SEAT).dial(sim.uri)

    ended = await log.first(ev.CallEnded, call_id)
    assert (ended.side, ended.cause) == ("customer", "normal_clearing")
    assert log.of(ev.CallAnswered, call_id)


async def test_local_hangup_ends_call_on_the_agent_side(seat, peers):
    manager, log = seat
    sim = await peers("--answer-after", "0")
    client = manager.seat(SEAT)
    call_id = await client.dial(sim.uri)
    await log.first(ev.CallAnswered, call_id)

    await client.hangup(call_id)
    ended = await log.first(ev.CallEnded, call_id)
    assert (ended.side, ended.cause) == ("agent", "normal_clearing")
    assert (await log.first(ev.RecordingClosed, call_id)).state == "complete"
    await wait_until(lambda: any(r.get("sim") == "ended" for r in sim.reports()), what="the sim to get the BYE")


async def test_hanging_up_while_it_rings_cancels_the_call(seat, peers):
    manager, log = seat
    sim = await peers()
    client = manager.seat(SEAT)
    call_id = await client.dial(sim.uri)
    await log.first(ev.CallRinging, call_id)

    await client.hangup(call_id)
    ended = await log.first(ev.CallEnded, call_id)
    assert (ended.sip_code, ended.side, ended.cause) == (487, "agent", "cancelled")


async def test_dtmf_travels_both_ways_as_rfc2833(seat, peers):
    manager, log = seat
    sim = await peers("--answer-after", "0", "--dtmf", "12#", "--dtmf-after", "0.3")
    client = manager.seat(SEAT)
    call_id = await client.dial(sim.uri)
    await log.first(ev.CallAnswered, call_id)

    await wait_until(lambda: len(log.of(ev.DtmfReceived, call_id)) == 3, what="three digits from the sim")
    assert "".join(e.digit for e in log.of(ev.DtmfReceived, call_id)) == "12#"
    await client.send_dtmf(call_id, "5*")
    await wait_until(lambda: [r["digit"] for r in sim.reports() if r.get("sim") == "dtmf"] == ["5", "*"],
                     what="the sim to receive 5*")
    await client.hangup(call_id)
    await log.first(ev.CallEnded, call_id)


async def test_hold_and_unhold_are_reported_and_recording_resumes(seat, peers, voices):
    manager, log = seat
    sim = await peers("--answer-after", "0", "--play", str(voices["customer"]), "--loop")
    client = manager.seat(SEAT)
    call_id = await client.dial(sim.uri)
    await log.first(ev.CallAnswered, call_id)
    path = (await log.first(ev.RecordingStarted, call_id)).path

    await client.hold(call_id)
    await wait_until(lambda: [e.held for e in log.of(ev.CallHeld, call_id)] == [True], what="the hold")
    await client.unhold(call_id)
    await wait_until(lambda: [e.held for e in log.of(ev.CallHeld, call_id)] == [True, False], what="the unhold")
    assert {e.by for e in log.of(ev.CallHeld, call_id)} == {"local"}
    unheld_size = os.path.getsize(path)
    await wait_until(lambda: os.path.getsize(path) > unheld_size + 2 * 64_000, what="2 s more of recording")
    await client.hangup(call_id)
    closed = await log.first(ev.RecordingClosed, call_id)
    _, customer_after_unhold = channel_rms(closed.path, last_seconds=1.5)
    assert customer_after_unhold > 300


async def test_call_to_sipp_uas_is_answered_and_hung_up_locally(seat):
    manager, log = seat
    port = free_udp_port()
    sipp = start_sipp_uas(port)
    try:
        client = manager.seat(SEAT)
        await wait_until(lambda: udp_port_taken(port), what="SIPp to listen")
        call_id = await client.dial(f"sip:service@127.0.0.1:{port}")
        await log.first(ev.CallAnswered, call_id)
        await client.hangup(call_id)
        ended = await log.first(ev.CallEnded, call_id)
        assert (ended.side, ended.cause) == ("agent", "normal_clearing")
        await wait_until(lambda: sipp.proc.poll() is not None, what="SIPp to finish its one call")
        assert sipp.proc.returncode == 0
    finally:
        sipp.kill()


async def test_bad_commands_get_clear_errors(seat):
    from telephony.client import CommandError

    manager, _ = seat
    client = manager.seat(SEAT)
    with pytest.raises(CommandError, match="not a SIP URI"):
        await client.dial("tel:+8613800138000")
    with pytest.raises(CommandError, match="no call"):
        await client.hangup("00000000-0000-0000-0000-000000000000")


def _tone_wav(path, seconds: float, hz: float = 440.0, amplitude: int = 8000):
    step = 2 * math.pi * hz / 16_000
    samples = array("h", (int(amplitude * math.sin(step * n)) for n in range(int(seconds * 16_000))))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(samples.tobytes())
    return path


def _silent_stretches(samples, rate: int, window_s: float = 0.1, silent_below: float = 50.0) -> list[float]:
    """Lengths in seconds of the runs of silent windows, in order."""
    window = int(rate * window_s)
    runs, current = [], 0
    for start in range(0, len(samples) - window + 1, window):
        chunk = samples[start:start + window]
        rms = math.sqrt(sum(x * x for x in chunk) / window)
        if rms < silent_below:
            current += 1
        elif current:
            runs.append(current * window_s)
            current = 0
    if current:
        runs.append(current * window_s)
    return runs


async def test_muted_agent_is_not_heard_by_the_customer_nor_recorded(seat, peers, tmp_path):
    manager, log = seat
    heard = tmp_path / "sim-heard.wav"
    tone = _tone_wav(tmp_path / "agent-tone.wav", 20)
    sim = await peers("--answer-after", "0", "--record", str(heard))
    client = manager.seat(SEAT)
    call_id = await client.dial(sim.uri, play=str(tone))
    await log.first(ev.CallAnswered, call_id)

    await asyncio.sleep(1.5)
    await client.mute(call_id)
    await asyncio.sleep(2.0)
    await client.unmute(call_id)
    await asyncio.sleep(1.5)
    await client.hangup(call_id)
    await log.first(ev.CallEnded, call_id)
    closed = await log.first(ev.RecordingClosed, call_id)

    assert [e.muted for e in log.of(ev.CallMuted, call_id)] == [True, False]
    await wait_until(lambda: mono_rms(heard) > 300, what="the sim's recording to be finalised")
    with wave.open(str(heard)) as w:
        rate = w.getframerate()
        customer_heard = array("h", w.readframes(w.getnframes()))
    with wave.open(closed.path) as w:
        left = array("h", w.readframes(w.getnframes()))[0::2]

    for name, samples, rate_ in (("customer heard", customer_heard, rate), ("recording left", left, 16_000)):
        # One silent stretch about as long as the mute (the edges are trimmed to 100 ms windows), with the
        # tone both before and after it: the agent was heard, then not, then again.
        stretches = [s for s in _silent_stretches(samples, rate_) if s >= 0.5]
        assert len(stretches) == 1, f"{name}: silent stretches {stretches}"
        assert 1.4 <= stretches[0] <= 2.6, f"{name}: muted for {stretches[0]} s"
        assert _tail_loud(samples, rate_), f"{name}: the agent is not heard after unmute"


def _tail_loud(samples, rate: int, seconds: float = 0.5) -> bool:
    tail = samples[-int(rate * (seconds + 0.3)):-int(rate * 0.3)]
    return math.sqrt(sum(x * x for x in tail) / len(tail)) > 1000
