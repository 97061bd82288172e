"""Progressive dialing: a ready agent in a progressive campaign gets the next lead dialled at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import factories as make

from crm import agent_status
from telesales.agent_desk import Desk
from telesales.progressive import ProgressiveDialer

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}


async def _agent(app_ctx, campaign_id, status="ready", reason=None) -> dict:
    async with app_ctx.pool.acquire() as c:
        user_id = await make.user(c)
        await agent_status.set_status(c, user_id, status, reason=reason, campaign_id=campaign_id,
                                      now=dt.datetime.now(dt.UTC))
        return dict((await c.fetchrow("select id, username, display_name, role from users where id = $1",
                                      user_id)).items())


async def _statuses(app_ctx) -> dict[int, str]:
    async with app_ctx.pool.acquire() as c:
        rows = await c.fetch("select user_id, status from agent_status_log where ended_at is null")
    return {r["user_id"]: r["status"] for r in rows}


async def test_ready_agents_of_a_progressive_campaign_are_dialled_one_lead_each(app_ctx):
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, dialing_mode="progressive", **ALL_DAY)
        leads = [await make.lead(c, campaign_id) for _ in range(3)]
        preview = await make.campaign(c, **ALL_DAY)
        await make.lead(c, preview)
    first, second = await _agent(app_ctx, campaign_id), await _agent(app_ctx, campaign_id)
    paused = await _agent(app_ctx, campaign_id, "paused", "lunch")
    previewer = await _agent(app_ctx, preview)
    dialer = ProgressiveDialer(app_ctx, interval=1.0)

    placed = await dialer.tick(dt.datetime.now(dt.UTC))
    assert len(placed) == 2 and len({p["lead_id"] for p in placed}) == 2
    assert {p["lead_id"] for p in placed} <= set(leads)
    statuses = await _statuses(app_ctx)
    assert (statuses[first["id"]], statuses[second["id"]]) == ("on_call", "on_call")
    assert (statuses[paused["id"]], statuses[previewer["id"]]) == ("paused", "ready")
    assert await dialer.tick(dt.datetime.now(dt.UTC)) == []  # both busy: nothing more

    # The first agent wraps up and is ready again: the last lead is dialled for them.
    desk = Desk(app_ctx, first)
    async with app_ctx.pool.acquire() as c:
        call_id = await c.fetchval("select id from calls where agent_id = $1", first["id"])
        mine = await c.fetchval("select lead_id from calls where id = $1", call_id)
    now = dt.datetime.now(dt.UTC)
    await desk.hangup(call_id, now)
    await desk.wrap_up({"code": "NA", "call_id": str(call_id)}, now)
    again = await dialer.tick(dt.datetime.now(dt.UTC))
    assert len(again) == 1 and again[0]["lead_id"] not in {p["lead_id"] for p in placed}
    assert mine in {p["lead_id"] for p in placed}


async def test_the_dialer_task_dials_within_a_few_rounds_and_stops_cleanly(app_ctx):
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, dialing_mode="progressive", **ALL_DAY)
        await make.lead(c, campaign_id)
    agent = await _agent(app_ctx, campaign_id)
    dialer = ProgressiveDialer(app_ctx, interval=0.05)
    await dialer.start()
    try:
        deadline = time.monotonic() + 20
        while (await _statuses(app_ctx))[agent["id"]] != "on_call":
            assert time.monotonic() < deadline, "the progressive dialer never dialled"
            await asyncio.sleep(0.05)
    finally:
        await dialer.stop()
