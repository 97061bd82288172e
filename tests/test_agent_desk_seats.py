"""The desk dials through a real seat (pjsua2 process) to a scripted SIP peer when seats are configured."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import factories as make
import pytest
from sip_helpers import DEADLINE, free_udp_port

from crm import db
from telephony.config import SeatConfig
from telephony.manager import SeatManager
from telesales.seats import SeatService
from telesales.settings import load_settings

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}
NUMBER = "+8613800138765"


@pytest.fixture
def sim_args():
    return ("--answer-after", "0.3")


@pytest.fixture
async def sim(peers, sim_args):
    return await peers(*sim_args)


@pytest.fixture
async def app_ctx(db_url, tmp_path, catalog, sim):
    """The app's context with one seat, and dialer.dial_uri pointing at a scripted peer."""
    from telesales.app import AppContext

    settings = load_settings(environ={
        "TELESALES_DATA_DIR": str(tmp_path / "var"),
        "TELESALES_TELEPHONY_SEATS": "1",
        "TELESALES_DIALER_DIAL_URI": sim.uri.replace("customer", "{number}"),
        "TELESALES_DIALER_LINE_TEST_URI": sim.uri,
    })
    pool = await db.create_pool(db_url, 1, 4)
    cfg = SeatConfig(name="seat1", sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"))
    seats = SeatService(SeatManager([cfg]), pool, tmp_path)
    await seats.start()
    yield AppContext(settings=settings, pool=pool, catalog=catalog, seats=seats)
    await seats.stop()
    await pool.close()


async def _dial_next(client, login, app_ctx) -> tuple[dict, str]:
    agent = await login(client, "agent")
    h = {"X-CSRF-Token": agent["csrf_token"]}
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, **ALL_DAY)
        await make.lead(c, campaign_id, number=NUMBER)
    assert (await client.post("/api/v1/agent/status", json={"status": "ready", "campaign_id": campaign_id},
                              headers=h)).status == 200
    lead = (await (await client.post("/api/v1/agent/next-lead", json={"campaign_id": campaign_id},
                                     headers=h)).json())["lead"]
    resp = await client.post("/api/v1/agent/dial", json={"lead_id": lead["lead_id"]}, headers=h)
    assert resp.status == 201, await resp.text()
    return agent, (await resp.json())["call_id"]


async def _call(app_ctx, call_id):
    async with app_ctx.pool.acquire() as c:
        return await c.fetchrow("select * from calls where id = $1::uuid", call_id)


async def _status(client) -> str:
    return (await (await client.get("/api/v1/agent/desk")).json())["status"]["status"]


async def test_the_agent_dials_through_the_seat_and_hangs_up(client, login, app_ctx):
    agent, call_id = await _dial_next(client, login, app_ctx)
    answered = None

    async def is_answered():
        nonlocal answered
        answered = await _call(app_ctx, call_id)
        return answered["answered_at"] is not None

    await _poll(is_answered, "the peer to answer")
    assert answered["seat"] == "seat1" and answered["to_number"] == NUMBER and answered["sip_call_id"]
    assert await _status(client) == "on_call"

    resp = await client.post("/api/v1/agent/hangup", json={"call_id": call_id},
                             headers={"X-CSRF-Token": agent["csrf_token"]})
    assert resp.status == 200, await resp.text()

    async def ended():
        return (await _call(app_ctx, call_id))["ended_at"] is not None

    await _poll(ended, "the seat to report the hang-up")
    call = await _call(app_ctx, call_id)
    assert call["hangup_side"] == "agent" and call["recording_state"] in ("recording", "complete")
    assert await _status(client) == "wrap_up"


@pytest.mark.parametrize("sim_args", [("--answer-after", "0.2", "--hangup-after", "0.5")])
async def test_when_the_customer_hangs_up_the_agent_is_in_wrap_up(client, login, app_ctx):
    _, call_id = await _dial_next(client, login, app_ctx)

    async def wrapped():
        return await _status(client) == "wrap_up"

    await _poll(wrapped, "the desk to go to wrap-up")
    assert (await _call(app_ctx, call_id))["hangup_side"] == "customer"


async def _poll(condition, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_hold_dtmf_and_a_transfer_within_the_allowed_destinations(client, login, app_ctx, sim):
    agent, call_id = await _dial_next(client, login, app_ctx)

    async def answered():
        return (await _call(app_ctx, call_id))["answered_at"] is not None

    await _poll(answered, "the peer to answer")

    async def control(body, status=200):
        resp = await client.post("/api/v1/agent/call", json={"call_id": call_id, **body},
                                 headers={"X-CSRF-Token": agent["csrf_token"]})
        assert resp.status == status, await resp.text()
        return await resp.json()

    await control({"action": "hold"})
    await control({"action": "unhold"})
    await control({"action": "dtmf", "digits": "12#"})

    async def heard_digits():
        return [r["digit"] for r in sim.reports() if r.get("sim") == "dtmf"] == ["1", "2", "#"]

    await _poll(heard_digits, "the peer to hear 1 2 #")
    await control({"action": "dtmf", "digits": "x"}, 422)
    refused = await control({"action": "transfer", "number": "+14165550100"}, 409)
    assert refused["error"] == "dial_blocked" and refused["reasons"][0]["gate"] == "destination_not_allowed"

    done = await control({"action": "transfer", "number": "138 0013 8111"})
    assert done["target"].startswith("sip:+8613800138111@")

    async def referred():
        return any(r.get("sim") == "transfer" and "+8613800138111" in r["target"] for r in sim.reports())

    await _poll(referred, "the peer to get the REFER")


async def _line_test(client, login) -> dict:
    agent = await login(client, "agent")
    resp = await client.post("/api/v1/agent/line-test", headers={"X-CSRF-Token": agent["csrf_token"]})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_test_my_line_calls_the_test_number_and_reports_the_answer(client, login, app_ctx):
    result = await _line_test(client, login)
    assert result["status"] == "answered" and result["sip_code"] == 200
    assert 0 < result["seconds_to_answer"] < 10
    async with app_ctx.pool.acquire() as c:
        row = await c.fetchrow("select agent_id, ended_at from calls where id = $1::uuid", result["call_id"])
    assert row["agent_id"] is None and row["ended_at"] is not None  # no disposition owed
    assert (await (await client.get("/api/v1/agent/desk")).json())["call"] is None


@pytest.mark.parametrize("sim_args", [("--reject", "486")])
async def test_test_my_line_reports_a_busy_line(client, login, app_ctx):
    result = await _line_test(client, login)
    assert (result["status"], result["sip_code"], result["seconds_to_answer"]) == ("busy", 486, None)
