"""The browser headset's WebSocket (/api/v1/agent/headset) without a browser: a real seat process,
telephony/sim as the customer, tones instead of speech so the checks are exact and quick.

The agent's 1 kHz tone goes in as microphone frames; the sim plays 440 Hz. The socket must bring the
440 Hz back, and the seat's recording must hold 1 kHz on its left (agent) channel and 440 Hz on the right.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import wave
from pathlib import Path

import factories as make
import numpy as np
import pytest
from aiohttp import WSMsgType
from sip_helpers import DEADLINE, free_udp_port

from crm import db
from telephony.config import SeatConfig
from telephony.frames import FRAME_BYTES, SAMPLE_RATE
from telephony.manager import SeatManager
from telesales.browser_headset import CLOSE_BAD_FRAME, CLOSE_TAKEN_OVER
from telesales.seats import SeatService
from telesales.settings import load_settings

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}
MIC_HZ, CUSTOMER_HZ = 1000, 440


@pytest.fixture
async def sim(peers, tmp_path):
    tone = tmp_path / "customer-tone.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(tone), "synth", "6", "sine",
                    str(CUSTOMER_HZ), "vol", "0.5"], check=True, timeout=60)
    return await peers("--answer-after", "0.3", "--play", str(tone))


@pytest.fixture
async def app_ctx(db_url, tmp_path, catalog, sim):
    from telesales.app import AppContext

    settings = load_settings(environ={
        "TELESALES_DATA_DIR": str(tmp_path / "var"),
        "TELESALES_TELEPHONY_SEATS": "1",
        "TELESALES_DIALER_DIAL_URI": sim.uri.replace("customer", "{number}"),
    })
    pool = await db.create_pool(db_url, 1, 4)
    cfg = SeatConfig(name="seat1", sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"))
    seats = SeatService(SeatManager([cfg]), pool, tmp_path)
    await seats.start()
    yield AppContext(settings=settings, pool=pool, catalog=catalog, seats=seats)
    await seats.stop()
    await pool.close()


def _origin(client) -> dict:
    return {"Origin": str(client.make_url("")).rstrip("/")}


def _tone_frames(hz: int, seconds: float) -> list[bytes]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (0.4 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def _main_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[spectrum.argmax()])


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(float) ** 2))) if len(samples) else 0.0


async def _next_json(ws, kind: str, timeout: float = DEADLINE) -> dict:
    """The next JSON message of `kind`, skipping frames and other messages."""
    async def find():
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and (data := msg.json())["type"] == kind:
                return data
        raise AssertionError(f"the socket closed before a {kind!r} message")

    return await asyncio.wait_for(find(), timeout)


async def _dial(client, agent, app_ctx) -> str:
    h = {"X-CSRF-Token": agent["csrf_token"]}
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, **ALL_DAY)
        await make.lead(c, campaign_id, number="+8613800138765")
    await client.post("/api/v1/agent/status", json={"status": "ready", "campaign_id": campaign_id}, headers=h)
    lead = (await (await client.post("/api/v1/agent/next-lead", json={"campaign_id": campaign_id},
                                     headers=h)).json())["lead"]
    resp = await client.post("/api/v1/agent/dial", json={"lead_id": lead["lead_id"]}, headers=h)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["call_id"]


async def test_the_socket_carries_the_mic_into_the_call_and_the_customer_back(client, login, app_ctx, tmp_path):
    agent = await login(client, "agent")
    async with client.ws_connect("/api/v1/agent/headset", headers=_origin(client)) as ws:
        await _next_json(ws, "stats")
        call_id = await _dial(client, agent, app_ctx)
        assert (await _next_json(ws, "call"))["call_id"] == call_id

        heard: list[bytes] = []

        async def listen():
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    heard.append(msg.data)
                elif msg.type == WSMsgType.TEXT and msg.json()["type"] == "idle":
                    return

        listener = asyncio.create_task(listen())
        for frame in _tone_frames(MIC_HZ, 3.0):  # at the pace a microphone gives them
            await ws.send_bytes(frame)
            await asyncio.sleep(0.02)
        resp = await client.post("/api/v1/agent/hangup", json={"call_id": call_id},
                                 headers={"X-CSRF-Token": agent["csrf_token"]})
        assert resp.status == 200, await resp.text()
        await asyncio.wait_for(listener, DEADLINE)  # the socket says "idle" when the call is gone
        stats = await _next_json(ws, "stats")

    assert stats["mic_frames"] >= 140 and stats["call_id"] is None, stats
    assert all(len(f) == FRAME_BYTES for f in heard) and len(heard) >= 100
    back = np.frombuffer(b"".join(heard), dtype="<i2")
    loud = back[np.abs(back) > 1000]
    assert len(loud) > SAMPLE_RATE and abs(_main_hz(back) - CUSTOMER_HZ) < 10  # the customer, not our echo

    path = await _closed_recording(app_ctx, call_id, tmp_path)
    with wave.open(str(path)) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left, right = stereo[:, 0], stereo[:, 1]
    assert _rms(left) > 2000 and abs(_main_hz(left) - MIC_HZ) < 10  # the mic is on the agent's channel
    assert abs(_main_hz(right) - CUSTOMER_HZ) < 10


async def _closed_recording(app_ctx, call_id: str, tmp_path: Path) -> Path:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while True:
        async with app_ctx.pool.acquire() as c:
            row = await c.fetchrow("select recording_state, recording_path from calls where id = $1::uuid", call_id)
        if row["recording_state"] == "complete":
            return tmp_path / row["recording_path"]
        assert asyncio.get_running_loop().time() < deadline, f"recording still {row['recording_state']}"
        await asyncio.sleep(0.1)


async def test_a_frame_of_the_wrong_size_closes_the_socket_saying_so(client, login):
    await login(client, "agent")
    async with client.ws_connect("/api/v1/agent/headset", headers=_origin(client)) as ws:
        await ws.send_bytes(bytes(FRAME_BYTES - 2))
        msg = await _closing(ws)
    assert msg.type == WSMsgType.CLOSE and msg.data == CLOSE_BAD_FRAME
    assert "a frame is 640 bytes" in msg.extra and "got 638" in msg.extra


async def test_a_second_page_takes_the_headset_over(client, login):
    await login(client, "agent")
    async with client.ws_connect("/api/v1/agent/headset", headers=_origin(client)) as first:
        await _next_json(first, "stats")
        async with client.ws_connect("/api/v1/agent/headset", headers=_origin(client)) as second:
            told = await _next_json(first, "taken_over")
            closed = await _closing(first)
            assert "another page" in told["message"] and closed.data == CLOSE_TAKEN_OVER
            await _next_json(second, "stats")  # the new page is served


async def test_frames_before_any_call_are_counted_as_dropped(client, login):
    await login(client, "agent")
    async with client.ws_connect("/api/v1/agent/headset", headers=_origin(client)) as ws:
        for frame in _tone_frames(MIC_HZ, 0.2):
            await ws.send_bytes(frame)
        await _next_json(ws, "stats")
        stats = await _next_json(ws, "stats")
    assert stats["mic_frames"] == 0 and stats["mic_dropped"] == 10 and stats["call_id"] is None


async def _closing(ws):
    async def close_message():
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return msg

    return await asyncio.wait_for(close_message(), DEADLINE)



def test_a_headset_setting_other_than_browser_or_phone_stops_start_up_naming_the_key(tmp_path):
    from telesales.settings import SettingsError

    assert load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path)}).dialer.headset == "browser"
    with pytest.raises(SettingsError, match="dialer.headset"):
        load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path), "TELESALES_DIALER_HEADSET": "bluetooth"})
