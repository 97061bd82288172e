"""A call waiting in the inbound queue, inside one real seat: it hears the queue's playlist and never the
seat's headset leg (another caller's agent); queue_connect stops the music and bridges it like any call."""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest
from sip_helpers import read_wav, tone_share, wait_until

from telephony import events as ev
from telephony.protocol import CommandError
from telesales.inbound_audio import RATE, music_samples

SEAT = "seat1"
HEADSET_HZ = 1500.0  # above every note of the hold music and its harmonics


def _wav(path, samples: np.ndarray):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def _samples_so_far(path) -> int:
    try:
        return read_wav(path)[0].size
    except (OSError, EOFError, wave.Error):
        return 0  # missing, or its header is being written


def _said(sim, what: str) -> list[dict]:
    return [r for r in sim.reports() if r.get("sim") == what]


async def test_a_queued_call_hears_the_queue_not_the_headset_until_connected(seat, peers, tmp_path):
    manager, log = seat
    t = np.arange(2 * RATE) / RATE
    agent_voice = _wav(tmp_path / "agent.wav", 8000 * np.sin(2 * np.pi * HEADSET_HZ * t))
    music = _wav(tmp_path / "music.wav", music_samples(2.0))
    heard = tmp_path / "caller-heard.wav"
    phone = await peers("--answer-after", "0", "--play", str(agent_voice), "--loop")
    caller = await peers("--answer-after", "0.2", "--record", str(heard))
    client = manager.seat(SEAT)
    await client.headset_connect(phone.uri)
    await wait_until(lambda: [e.state for e in log.of(ev.HeadsetState)][-1:] == ["connected"],
                     what="the headset leg")

    call_id = await client.dial(caller.uri)
    await client.queue_play(call_id, [str(music)])  # before the answer: starts with the media
    with pytest.raises(CommandError, match="no such file"):
        await client.queue_play(call_id, [str(tmp_path / "missing.wav")])
    await log.first(ev.CallAnswered, call_id)
    await asyncio.sleep(3.0)
    await client.queue_connect(call_id)
    await asyncio.sleep(3.0)
    await client.hangup(call_id)
    await wait_until(lambda: _said(caller, "ended"), what="the caller's call to end")
    await wait_until(lambda: _samples_so_far(heard) > 4 * RATE, what="the caller's recording")

    samples, _, rate = read_wav(heard)
    assert rate == RATE
    queued, connected = samples[int(0.5 * RATE):int(2.5 * RATE)], samples[-int(2.3 * RATE):-int(0.3 * RATE)]
    rms = float(np.sqrt(np.mean(queued.astype(np.float64) ** 2)))
    assert rms > 1000, "the queued caller hears the hold music"
    assert tone_share(queued, HEADSET_HZ) < 0.05, "the headset leg must not reach a queued caller"
    assert tone_share(connected, HEADSET_HZ) > 0.5, "once connected, the caller hears the agent"
