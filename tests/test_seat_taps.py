"""Media taps on a real call: the service hears the customer live, and what it injects reaches the call."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from sip_helpers import (
    DEADLINE,
    best_loop_correlation,
    envelope,
    read_wav,
    speech_wav,
    tone_frames,
    tone_share,
    wait_until,
)

from telephony import events as ev
from telephony.frames import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from telephony.protocol import CommandError

SEAT = "seat1"


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    # Words with pauses: an energy pattern that a tap must reproduce.
    return speech_wav(tmp_path_factory.mktemp("voices"), "One. Two. Three. Four.", "counting")


class Collector:
    """Reads a tap in the background, keeping each direction's frames in order."""

    def __init__(self, tap) -> None:
        self.tap = tap
        self.frames: dict[str, list[bytes]] = {"customer": [], "agent": []}
        self.ended = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for frame in self.tap:
            assert len(frame.pcm) == FRAME_BYTES
            self.frames[frame.direction].append(frame.pcm)
        self.ended = True

    def samples(self, direction: str) -> np.ndarray:
        return np.frombuffer(b"".join(self.frames[direction]), "<i2")


async def test_tap_streams_the_customer_and_injected_audio_reaches_the_call(seat, peers, counting, tmp_path):
    manager, log = seat
    heard = tmp_path / "customer-heard.wav"
    sim = await peers("--answer-after", "0", "--play", str(counting), "--loop", "--record", str(heard))
    client = manager.seat(SEAT)
    call_id = await client.dial(sim.uri)
    await log.first(ev.CallAnswered, call_id)
    recording = (await log.first(ev.RecordingStarted, call_id)).path

    first, second = Collector(await client.open_tap(call_id)), Collector(await client.open_tap(call_id))
    played_seconds = read_wav(counting)[0].size / SAMPLE_RATE
    # Two loops of the customer's words, heard live, 50 frames a second per direction.
    await wait_until(lambda: len(first.frames["customer"]) >= 2 * played_seconds * 50, timeout=DEADLINE,
                     what="two loops of the customer tapped")

    for frame in tone_frames(1.0):
        await first.tap.inject(frame, to="both")
    tone_from = len(first.frames["agent"])
    await wait_until(lambda: len(first.frames["agent"]) >= tone_from + 100, what="2 s of the agent direction")
    await client.hangup(call_id)
    closed = await log.first(ev.RecordingClosed, call_id)
    await wait_until(lambda: first.ended and second.ended, what="the taps to end with the call")

    # The customer direction is the played file, word for word (energy envelope, codec and all).
    tapped = envelope(first.samples("customer"))
    played = envelope(read_wav(counting)[0])
    assert best_loop_correlation(tapped[-int(1.5 * len(played)):], played) > 0.7  # shuffled frames: ~0.15
    again = envelope(second.samples("customer"))
    assert best_loop_correlation(again[-int(1.5 * len(played)):], played) > 0.7, "a second tap hears it too"

    # The injected tone went out as the agent side: in the tap, the seat's left channel and the customer's ear.
    agent = first.samples("agent")[tone_from * FRAME_SAMPLES:]
    assert tone_share(agent) > 0.8 and np.sqrt((agent.astype(float) ** 2).mean()) > 1000
    stereo, channels, _ = read_wav(closed.path)
    left = stereo[0::2]
    assert channels == 2 and tone_share(left) > 0.8 and np.abs(left).max() > 4000
    await wait_until(lambda: any(r.get("sim") == "ended" for r in sim.reports()), what="the sim to hang up")
    await wait_until(lambda: heard.exists() and read_wav(heard)[0].size > SAMPLE_RATE, what="the sim's recording")
    customer_heard, _, rate = read_wav(heard)
    assert rate == SAMPLE_RATE and tone_share(customer_heard) > 0.5 and np.abs(customer_heard).max() > 4000
    assert recording == closed.path


async def test_tap_needs_an_answered_call_and_a_frame_of_640_bytes(seat, peers):
    manager, log = seat
    sim = await peers("--answer-after", "0")
    client = manager.seat(SEAT)
    with pytest.raises(CommandError, match="no call"):
        await client.open_tap("00000000-0000-0000-0000-000000000000")
    call_id = await client.dial(sim.uri)
    await log.first(ev.CallAnswered, call_id)
    tap = await client.open_tap(call_id)
    with pytest.raises(ValueError, match="640"):
        await tap.inject(b"\0" * 100)
    with pytest.raises(ValueError, match="agent, both"):
        await tap.inject(b"\0" * FRAME_BYTES, to="customer")
    await tap.aclose()
    await asyncio.wait_for(_drain(tap), DEADLINE)  # the stream ends
    with pytest.raises(ConnectionError):
        await tap.inject(b"\0" * FRAME_BYTES)
    await client.hangup(call_id)
    await log.first(ev.CallEnded, call_id)


async def _drain(tap) -> None:
    async for _ in tap:
        pass
