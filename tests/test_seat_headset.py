"""The agent's headset leg (a SIP call to the agent's own phone) and the recording notice, over real calls."""

from __future__ import annotations

import os
import wave

import numpy as np
import pytest
from sip_helpers import (
    best_correlation,
    best_loop_correlation,
    envelope,
    peak_tone_share,
    read_wav,
    speech_wav,
    tone_frames,
    wait_until,
)

from telephony import events as ev
from telephony.protocol import CommandError

SEAT = "seat1"


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voices")
    return {
        "agent": speech_wav(folder, "Good morning, Anna speaking, how can I help you today?", "agent"),
        "customer": speech_wav(folder, "I would like to cancel my order number five.", "customer"),
        "notice": speech_wav(folder, "This call is recorded for quality and training.", "notice"),
    }


def _said(sim, what: str) -> list[dict]:
    return [r for r in sim.reports() if r.get("sim") == what]


async def _recording_of(sim, path) -> np.ndarray:
    """What a sim heard; its WAV header is written when its call ends."""
    await wait_until(lambda: _said(sim, "ended"), what="the sim's call to end")
    await wait_until(lambda: _samples_so_far(path) > 16_000, what="the sim's recording")
    return read_wav(path)[0]


def _samples_so_far(path) -> int:
    try:
        return read_wav(path)[0].size
    except (OSError, EOFError, wave.Error):
        return 0  # missing, or its header is being written


async def test_customer_calls_are_bridged_to_the_agents_phone(seat, peers, voices, tmp_path):
    manager, log = seat
    agent_heard, customer_heard = tmp_path / "agent-heard.wav", tmp_path / "customer-heard.wav"
    phone = await peers("--answer-after", "0", "--play", str(voices["agent"]), "--loop", "--record", str(agent_heard))
    customer = await peers("--answer-after", "0", "--play", str(voices["customer"]), "--loop",
                           "--record", str(customer_heard))
    client = manager.seat(SEAT)

    headset_id = await client.headset_connect(phone.uri)
    await wait_until(lambda: [e.state for e in log.of(ev.HeadsetState)] == ["connecting", "connected"],
                     what="the headset leg to connect")
    assert (await client.ping())["headset"] == "connected"
    with pytest.raises(CommandError, match="already has a headset leg"):
        await client.headset_connect(phone.uri)
    assert log.of(ev.CallStarted) == [], "the headset leg is not a customer call"

    call_id = await client.dial(customer.uri)
    await log.first(ev.CallAnswered, call_id)
    tap = await client.open_tap(call_id)
    frames = tone_frames(1.0)
    await wait_until(lambda: len(_said(customer, "answered")) == 1)
    for frame in frames:  # whisper: for the agent's ear only
        await tap.inject(frame, to="agent")
    path = (await log.first(ev.RecordingStarted, call_id)).path
    await wait_until(lambda: os.path.getsize(path) > 44 + 4 * 16_000 * 4, what="4 s of recording")
    await client.hangup(call_id)
    closed = await log.first(ev.RecordingClosed, call_id)
    assert (await client.ping())["headset"] == "connected", "the headset leg outlives the customer call"
    await client.headset_disconnect()
    gone = await wait_until(lambda: [e for e in log.of(ev.HeadsetState) if e.state == "disconnected"],
                            what="the headset leg to end")
    assert (gone[0].call_id, gone[0].cause) == (headset_id, "normal_clearing")

    # The agent's phone speaks on the left channel and to the customer; the customer on the right. Each stream
    # matches its own voice, and better than the other voice (on a loaded host a jitter buffer may drop
    # or stretch a few hundred ms, so the bar is not higher).
    stereo = read_wav(closed.path)[0]
    heard_by_customer = await _recording_of(customer, customer_heard)
    for name, samples, own, other in (("left", stereo[0::2], "agent", "customer"),
                                      ("right", stereo[1::2], "customer", "agent"),
                                      ("customer's ear", heard_by_customer, "agent", "customer")):
        env = envelope(samples)[-150:]
        mine = best_loop_correlation(env, envelope(read_wav(voices[own])[0]))
        theirs = best_loop_correlation(env, envelope(read_wav(voices[other])[0]))
        assert mine > 0.5 and mine > theirs, f"{name}: {own} voice {mine:.2f}, {other} voice {theirs:.2f}"
    # The whisper reached the agent's phone and nobody else.
    heard_by_agent = await _recording_of(phone, agent_heard)
    assert peak_tone_share(heard_by_agent) > 0.6
    assert peak_tone_share(heard_by_customer) < 0.2
    assert peak_tone_share(stereo[0::2]) < 0.2 and peak_tone_share(stereo[1::2]) < 0.2


async def test_recording_notice_is_played_to_the_customer_at_answer(seat, peers, voices, tmp_path):
    manager, log = seat
    heard = tmp_path / "customer-heard.wav"
    customer = await peers("--answer-after", "0", "--hangup-after", "4", "--record", str(heard))
    client = manager.seat(SEAT)
    with pytest.raises(CommandError, match="no such file"):
        await client.dial(customer.uri, announce=str(tmp_path / "missing.wav"))
    call_id = await client.dial(customer.uri, announce=str(voices["notice"]))
    closed = await log.first(ev.RecordingClosed, call_id)

    notice = envelope(read_wav(voices["notice"])[0])
    heard_env = envelope(await _recording_of(customer, heard))
    # The seat sends the notice from the answer on: the left channel holds it, frame for frame.
    left = envelope(read_wav(closed.path)[0][0::2])
    assert best_correlation(left[: len(notice) + 50], notice) > 0.9, "the recording holds the notice"
    # The customer hears speech about as long as the notice, starting within a second, then nothing. (Not
    # frame for frame: the sim's jitter buffer drops a few frames as it settles at call start.)
    voiced = np.flatnonzero(heard_env > 300)
    assert voiced[0] < 50
    assert 0.7 < len(voiced) / np.count_nonzero(notice > 300) < 1.3
    assert voiced[-1] < voiced[0] + len(notice) + 25
