"""Who is busy with what (telesales/claims.py), with the real parts: seat processes, telephony/sim peers
over 127.0.0.1, the embedded PostgreSQL, the app over HTTP and WebSockets.

- the desk's manual dial and the predictive dialer racing for the only seat: one call goes out, the
  other side is told the seat is busy (before: both dialled the same seat);
- a predictive answer and the agent's own dial racing for the same agent: the agent gets one call,
  and a dial while they are on the predictive call is a 409 that says so;
- a caller waiting in the inbound queue does not make their seat busy: the desk dials from it, and
  the caller is taken once that call is over (not onto a seat another conversation holds);
- a supervisor's whisper reaches an agent on the browser headset (tones, so the check is exact).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import time

import factories as make
import numpy as np
import pytest
from aiohttp import WSMsgType
from sip_helpers import DEADLINE, free_udp_port, start_sim

from crm import agent_status, db
from crm.users import create_user
from telephony import events as ev
from telephony.config import SeatConfig
from telephony.frames import FRAME_BYTES, SAMPLE_RATE
from telephony.manager import SeatManager
from telesales.inbound import InboundQueue, inbound_config
from telesales.passwords import hash_password
from telesales.predictive import PredictiveDialer
from telesales.seats import SeatService
from telesales.settings import load_settings

pytestmark = pytest.mark.timeout(120)

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}
LINE = "service"
CUSTOMER_HZ, WHISPER_HZ = 440, 1000


@pytest.fixture
def seat_count() -> int:
    return 1


@pytest.fixture
async def sim(peers, tmp_path):
    """The customers' side: answers, plays a 440 Hz tone until the seat hangs up."""
    tone = tmp_path / "customer-tone.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(tone), "synth", "4", "sine",
                    str(CUSTOMER_HZ), "vol", "0.5"], check=True, timeout=60)
    return await peers("--answer-after", "0.3", "--play", str(tone), "--loop")


@pytest.fixture
async def app_ctx(db_url, tmp_path, catalog, sim, seat_count):
    from telesales.app import AppContext

    settings = load_settings(environ={
        "TELESALES_DATA_DIR": str(tmp_path / "var"),
        "TELESALES_TELEPHONY_SEATS": str(seat_count),
        "TELESALES_DIALER_DIAL_URI": sim.uri.replace("customer", "{number}"),
        "TELESALES_INBOUND_LINES": f"{LINE}=support",
        "TELESALES_INBOUND_ROUTE_INTERVAL_SECONDS": "0.2",
    })
    pool = await db.create_pool(db_url, 1, 6)
    cfgs = [SeatConfig(name=f"seat{n}", sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"),
                       allowed_peers=("127.0.0.1",), inbound_numbers=(LINE,)) for n in range(1, seat_count + 1)]
    seats = SeatService(SeatManager(cfgs), pool, tmp_path)
    await seats.start()
    ctx = AppContext(settings=settings, pool=pool, catalog=catalog, seats=seats)
    ctx.seat_ports = [c.sip_port for c in cfgs]
    yield ctx
    await seats.stop()
    await pool.close()


async def _poll(condition, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while not (value := await condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return value


async def _fetch(ctx, sql: str, *args):
    async with ctx.pool.acquire() as c:
        return await c.fetch(sql, *args)


async def _ready_with_lead(client, agent, ctx, number: str = "+8613800138765", **campaign) -> tuple[int, int]:
    """The agent ready in a new campaign with a lead of it in front of them: (campaign id, lead id)."""
    h = {"X-CSRF-Token": agent["csrf_token"]}
    async with ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, **ALL_DAY, **campaign)
        lead_id = await make.lead(c, campaign_id, number=number)
    resp = await client.post("/api/v1/agent/status", json={"status": "ready", "campaign_id": campaign_id}, headers=h)
    assert resp.status == 200, await resp.text()
    resp = await client.post("/api/v1/agent/take", json={"lead_id": lead_id}, headers=h)
    assert resp.status == 200, await resp.text()
    return campaign_id, lead_id


async def _predictive_campaign(ctx, agent_id: int | None, number: str) -> int:
    """A predictive campaign with one lead; `agent_id` (if any) ready in it."""
    async with ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, dialing_mode="predictive", **ALL_DAY)
        await make.lead(c, campaign_id, number=number)
        if agent_id is not None:
            await agent_status.set_status(c, agent_id, "ready", campaign_id=campaign_id,
                                          now=dt.datetime.now(dt.UTC))
    return campaign_id


@pytest.fixture
async def dialer(app_ctx):
    """The predictive dialer, following its calls' events but pacing only when the test calls tick()."""
    d = PredictiveDialer(app_ctx)
    await d.prepare()
    app_ctx.seats.listeners.append(d._on_event)
    yield d
    await d.stop()


async def test_a_manual_dial_and_a_predictive_line_race_for_the_only_seat(client, login, app_ctx, dialer):
    agent = await login(client, "agent")
    _, lead_id = await _ready_with_lead(client, agent, app_ctx)
    async with app_ctx.pool.acquire() as c:
        other = (await create_user(c, "pat", "agent", hash_password("correct horse")))["id"]
    await _predictive_campaign(app_ctx, other, "+8613800138001")

    manual, placed = await asyncio.gather(
        client.post("/api/v1/agent/dial", json={"lead_id": lead_id}, headers={"X-CSRF-Token": agent["csrf_token"]}),
        dialer.tick(dt.datetime.now(dt.UTC)),
    )
    body = await manual.json()
    calls = await _fetch(app_ctx, "select id, agent_id, seat from calls where seat is not null and "
                                  "(hangup_cause is null or hangup_cause <> 'dial_failed')")
    print("manual dial:", manual.status, body, "predictive lines:", placed)
    assert len(calls) == 1 and calls[0]["seat"] == "seat1", calls  # one call on the seat, never two
    if manual.status == 201:
        assert placed == [] and str(calls[0]["id"]) == body["call_id"]
        assert app_ctx.seats.claims.holder("seat1").purpose == "manual dial"
    else:  # the dialer had the seat: the agent is told so, and nothing of the refused dial is left
        assert manual.status == 409 and body["error"] == "seat_busy", body
        assert "seat1: predictive call" in body["message"], body
        assert placed == [calls[0]["id"]]
        desk = await (await client.get("/api/v1/agent/desk")).json()
        assert desk["status"]["status"] == "ready" and desk["call"] is None

    # Whoever lost, the seat stays theirs to lose until that call is over: the other is refused again.
    if manual.status == 201:
        assert await dialer.tick(dt.datetime.now(dt.UTC)) == []


@pytest.mark.parametrize("seat_count", [2])
async def test_a_predictive_answer_and_the_agents_own_dial_race_for_the_agent(client, login, app_ctx, dialer):
    agent = await login(client, "agent")
    h = {"X-CSRF-Token": agent["csrf_token"]}
    campaign_id = await _predictive_campaign(app_ctx, None, "+8613800138002")
    async with app_ctx.pool.acquire() as c:
        manual_lead = await make.lead(c, campaign_id, number="+8613800138003")
    assert (await client.post("/api/v1/agent/status", json={"status": "ready", "campaign_id": campaign_id},
                              headers=h)).status == 200
    assert (await client.post("/api/v1/agent/take", json={"lead_id": manual_lead}, headers=h)).status == 200

    # The dialer's line answers; its answer is handled at the very moment the agent clicks dial.
    app_ctx.seats.listeners.remove(dialer._on_event)
    [line] = await dialer.tick(dt.datetime.now(dt.UTC))
    await _poll(lambda: _fetch(app_ctx, "select 1 from calls where id = $1 and answered_at is not null", line),
                "the predictive line to answer")
    app_ctx.seats.listeners.append(dialer._on_event)
    manual, outcome = await asyncio.gather(
        client.post("/api/v1/agent/dial", json={"lead_id": manual_lead}, headers=h),
        dialer.handle(ev.CallAnswered(seat="seat1", call_id=str(line)), dt.datetime.now(dt.UTC)),
    )
    body = await manual.json()
    mine = await _fetch(app_ctx, "select id from calls where agent_id = $1 and ended_at is null", agent["id"])
    print("manual dial:", manual.status, body, "predictive answer:", outcome)
    assert len(mine) == 1, mine  # one call for the agent, never two
    if outcome == "connected":
        assert manual.status == 409 and body["error"] == "agent_busy", body
        assert mine[0]["id"] == line and "you are on a predictive call to +8613800138002" in body["message"]
    else:
        assert outcome == "abandoned" and manual.status == 201 and str(mine[0]["id"]) == body["call_id"]

    # Clicked again while on that call: the same clear 409.
    again = await client.post("/api/v1/agent/dial", json={"lead_id": manual_lead}, headers=h)
    assert again.status == 409 and (await again.json())["error"] == "agent_busy"


async def test_a_caller_waiting_in_the_queue_does_not_make_the_seat_busy(client, login, app_ctx, tmp_path):
    inbound = InboundQueue(inbound_config(app_ctx.settings), app_ctx.pool, app_ctx.seats)
    await inbound.start()
    caller = start_sim(free_udp_port(), "--call", f"sip:{LINE}@127.0.0.1:{app_ctx.seat_ports[0]}",
                       "--from-user", "+8613800000009")
    try:
        await _poll(lambda: _fetch(app_ctx, "select 1 from calls where direction = 'inbound' and "
                                            "answered_at is not null and queue_outcome is null"),
                    "the caller to wait in the queue")
        agent = await login(client, "agent")  # no 'support' skill: the queue does not want them
        _, lead_id = await _ready_with_lead(client, agent, app_ctx)
        resp = await client.post("/api/v1/agent/dial", json={"lead_id": lead_id},
                                 headers={"X-CSRF-Token": agent["csrf_token"]})
        assert resp.status == 201, await resp.text()  # before: 409 "every seat is on a call"
        call_id = (await resp.json())["call_id"]
        assert app_ctx.seats.claims.holder("seat1").call_id == call_id

        # A support agent comes: the caller is taken at once, on the same seat the manual call holds
        # (a seat bridges several calls; the queue is first come, first served), and the dial keeps the seat.
        async with app_ctx.pool.acquire() as c:
            support = (await create_user(c, "sue", "agent", hash_password("correct horse"), skills=["support"]))["id"]
            await agent_status.set_status(c, support, "ready", now=dt.datetime.now(dt.UTC))
        taken = await _poll(lambda: _fetch(app_ctx, "select agent_id, seat from calls where direction = 'inbound' "
                                                    "and queue_outcome = 'answered'"), "the caller to be taken")
        assert (taken[0]["agent_id"], taken[0]["seat"]) == (support, "seat1")
        assert app_ctx.seats.claims.holder("seat1").call_id == call_id
        resp = await client.post("/api/v1/agent/hangup", json={"call_id": call_id},
                                 headers={"X-CSRF-Token": agent["csrf_token"]})
        assert resp.status == 200, await resp.text()
    finally:
        caller.kill()
        await inbound.stop()


def _tone_frames(hz: int, seconds: float) -> list[bytes]:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def _level(samples: np.ndarray, hz: int) -> float:
    """Spectrum magnitude within 15 Hz of `hz`, over the whole stretch."""
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    return float(spectrum[np.abs(freqs - hz) < 15].max())


async def _next_json(ws, kind: str) -> dict:
    async def find():
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and (data := msg.json())["type"] == kind:
                return data
        raise AssertionError(f"the socket closed before a {kind!r} message")

    return await asyncio.wait_for(find(), DEADLINE)


async def test_a_whisper_reaches_an_agent_on_the_browser_headset(client, login, app_ctx):
    agent = await login(client, "agent")
    origin = {"Origin": str(client.make_url("")).rstrip("/")}
    async with client.ws_connect("/api/v1/agent/headset", headers=origin) as headset:
        _, lead_id = await _ready_with_lead(client, agent, app_ctx)
        resp = await client.post("/api/v1/agent/dial", json={"lead_id": lead_id},
                                 headers={"X-CSRF-Token": agent["csrf_token"]})
        assert resp.status == 201, await resp.text()
        call_id = (await resp.json())["call_id"]
        assert (await _next_json(headset, "call"))["call_id"] == call_id

        heard: list[bytes] = []

        async def listen():
            async for msg in headset:
                if msg.type == WSMsgType.BINARY:
                    heard.append(msg.data)

        listening = asyncio.create_task(listen())
        await login(client, "admin")  # the same client's cookie is now a supervisor's (admins see every team)
        async with client.ws_connect(f"/api/v1/supervisor/calls/{call_id}/audio", headers=origin) as coach:
            await coach.send_str('{"mode": "whisper"}')
            before = len(heard)
            for frame in _tone_frames(WHISPER_HZ, 2.0):  # at the pace a microphone gives them
                await coach.send_bytes(frame)
                await asyncio.sleep(0.02)
            during = heard[before:]
        listening.cancel()

    ear = np.frombuffer(b"".join(during), dtype="<i2")
    assert len(ear) > SAMPLE_RATE, f"only {len(during)} frames reached the page"
    whisper, customer = _level(ear, WHISPER_HZ), _level(ear, CUSTOMER_HZ)
    print(f"page's ear: whisper {whisper:.0f}, customer {customer:.0f} ({len(during)} frames)")
    assert customer > 0 and whisper > 0.3 * customer  # both: the customer with the whisper mixed in
