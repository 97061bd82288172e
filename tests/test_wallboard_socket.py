"""The wallboard WebSocket against the real app and database: who may connect (issue #7 acceptance 3),
what it pushes when the floor changes, the team scope, and queue / alert notices."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import aiohttp
import factories as make
import pytest
from wallboard_helpers import agent_is, logged_in, make_user, next_event, open_board

from crm import agent_status
from telesales.floor_feed import FLOOR


async def _refused(session, client, origin="same") -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await open_board(session, client, origin)
    return e.value.status


async def test_agent_qa_anonymous_and_bad_origin_are_refused_at_the_handshake(client, app_ctx):
    for role in ("agent", "qa", "supervisor", "admin"):
        await make_user(app_ctx, f"wb_{role}", role)
    refusals = {}
    for role in ("agent", "qa"):
        session, _ = await logged_in(client, f"wb_{role}")
        async with session:
            refusals[role] = await _refused(session, client)
    async with aiohttp.ClientSession(base_url=str(client.make_url(""))) as anonymous:
        refusals["anonymous"] = await _refused(anonymous, client)
    session, _ = await logged_in(client, "wb_supervisor")
    async with session:
        refusals["bad origin"] = await _refused(session, client, origin="http://evil.example")
        refusals["no origin"] = await _refused(session, client, origin=None)
        assert refusals == {"agent": 403, "qa": 403, "anonymous": 401, "bad origin": 403, "no origin": 403}
        assert client.app[FLOOR].hub.subscribers == 0  # nobody refused got as far as subscribing

        # The same supervisor with this site's Origin gets in, and so does an admin.
        async with await open_board(session, client) as ws:
            snapshot, _ = await next_event(ws, lambda e: True)
            assert snapshot["type"] == "snapshot"
    admin, _ = await logged_in(client, "wb_admin")
    async with admin, await open_board(admin, client) as ws:
        assert (await next_event(ws, lambda e: True))[0]["type"] == "snapshot"


async def test_a_plain_get_of_the_socket_address_is_a_clear_400(client, app_ctx):
    await make_user(app_ctx, "wb_sup", "supervisor")
    session, _ = await logged_in(client, "wb_sup")
    async with session:
        resp = await session.get("/api/v1/supervisor/wallboard/ws")
        assert resp.status == 400
        assert "WebSocket" in (await resp.json())["message"]


async def test_status_changes_and_calls_are_pushed_with_customer_campaign_and_counts(client, app_ctx):
    agent = await make_user(app_ctx, "li_agent", "agent", team="North")
    await make_user(app_ctx, "boss", "supervisor")
    session, _ = await logged_in(client, "boss")
    async with session, await open_board(session, client) as ws:
        snapshot, _ = await next_event(ws, lambda e: True)
        row = next(a for a in snapshot["agents"] if a["id"] == agent["id"])
        assert row["status"] is None and row["team"] == "North" and row["dials"] == 0

        async with app_ctx.pool.acquire() as c:
            await agent_status.set_status(c, agent["id"], "ready", now=dt.datetime.now(dt.UTC))
        event, _ = await next_event(ws, agent_is(agent["id"], status="ready"))
        assert event["team_id"] == agent["team_id"]

        async with app_ctx.pool.acquire() as c:
            campaign = await make.campaign(c, name="Spring water")
            customer = await make.customer(c, "Zhang Wei", phones=["+8613800138000"])
            lead = await make.lead(c, campaign, customer, "+8613800138000")
            call_id = await make.call(c, lead, agent_id=agent["id"])
        event, _ = await next_event(ws, agent_is(agent["id"], call_id=call_id))
        assert (event["agent"]["customer"], event["agent"]["campaign"], event["agent"]["dials"]) == \
            ("Zhang Wei", "Spring water", 1)

        async with app_ctx.pool.acquire() as c:
            await c.execute("update calls set answered_at = now() where id = $1::uuid", call_id)
        event, _ = await next_event(ws, agent_is(agent["id"], connects=1))
        assert event["agent"]["call_answered"] is not None

        async with app_ctx.pool.acquire() as c:
            await c.execute("update calls set ended_at = now() where id = $1::uuid", call_id)
            await c.execute("""insert into call_dispositions (call_id, lead_id, customer_id, agent_id, code)
                               values ($1::uuid, $2, $3, $4, 'SALE')""", call_id, lead, customer, agent["id"])
        event, _ = await next_event(ws, agent_is(agent["id"], sales=1))
        assert event["agent"]["call_id"] is None  # the call ended


async def test_a_supervisor_with_teams_sees_only_those_teams(client, app_ctx):
    north = await make_user(app_ctx, "north_agent", "agent", team="North")
    south = await make_user(app_ctx, "south_agent", "agent", team="South")
    loner = await make_user(app_ctx, "no_team_agent", "agent")
    sup = await make_user(app_ctx, "north_sup", "supervisor")
    async with app_ctx.pool.acquire() as c:
        await c.execute("insert into reviewer_teams (reviewer_id, team_id) values ($1, $2)", sup["id"],
                        north["team_id"])
    session, _ = await logged_in(client, "north_sup")
    async with session, await open_board(session, client) as ws:
        snapshot, _ = await next_event(ws, lambda e: True)
        assert {a["id"] for a in snapshot["agents"]} == {north["id"]}
        now = dt.datetime.now(dt.UTC)
        async with app_ctx.pool.acquire() as c:
            for user in (south, loner, north):  # north last: its event arrives after the others would have
                await agent_status.set_status(c, user["id"], "ready", now=now)
        seen = []
        event, _ = await next_event(ws, lambda e: seen.append(e) or agent_is(north["id"], status="ready")(e))
        assert {e["agent"]["id"] for e in seen if e["type"] == "agent"} == {north["id"]}


async def test_queue_and_alert_notices_reach_the_board_and_bad_notices_do_not_stop_it(client, app_ctx):
    agent = await make_user(app_ctx, "wang", "agent", team="East")
    await make_user(app_ctx, "boss2", "admin")
    async with app_ctx.pool.acquire() as c:
        call_id = await make.call(c, await make.lead(c), agent_id=agent["id"])
    session, _ = await logged_in(client, "boss2")
    async with session, await open_board(session, client) as ws:
        await next_event(ws, lambda e: e["type"] == "snapshot")
        async with app_ctx.pool.acquire() as c:
            await c.execute("select pg_notify('floor_events', 'not json')")
            await c.execute("select pg_notify('live_events', $1)", json.dumps({"type": "alert", "call_id": "nope"}))
            await c.execute("select pg_notify('floor_events', $1)", json.dumps(
                {"type": "queue", "queue": "service", "waiting": 3, "longest_wait_since": "2026-01-01T08:00:00+00:00"}))
            await c.execute("select pg_notify('live_events', $1)", json.dumps(
                {"type": "alert", "call_id": call_id, "kind": "complaint", "speaker": "customer",
                 "text": "我要投訴", "at": 12.5}))
        queue, _ = await next_event(ws, lambda e: e["type"] == "queue")
        assert (queue["queue"], queue["waiting"]) == ("service", 3)
        alert, _ = await next_event(ws, lambda e: e["type"] == "alert")
        assert (alert["call_id"], alert["agent"], alert["team_id"], alert["text"]) == \
            (call_id, "wang", agent["team_id"], "我要投訴")

    # A board that connects later gets the queue's state and the alert in its snapshot.
    session, _ = await logged_in(client, "boss2")
    async with session, await open_board(session, client) as ws:
        snapshot, _ = await next_event(ws, lambda e: True)
        assert [q["waiting"] for q in snapshot["queues"]] == [3]
        assert [a["kind"] for a in snapshot["alerts"]] == ["complaint"]


async def test_predictive_campaign_abandon_rate_is_pushed(client, app_ctx):
    await make_user(app_ctx, "boss3", "admin")
    agent = await make_user(app_ctx, "zhao", "agent")
    async with app_ctx.pool.acquire() as c:
        campaign = await make.campaign(c, name="Predict", dialing_mode="predictive")
    session, _ = await logged_in(client, "boss3")
    async with session, await open_board(session, client) as ws:
        snapshot, _ = await next_event(ws, lambda e: True)
        assert [(r["name"], r["rate_30d"]) for r in snapshot["campaigns"]] == [("Predict", 0.0)]
        async with app_ctx.pool.acquire() as c, c.transaction():
            for agent_id in (agent["id"], agent["id"], agent["id"], None):  # one answered with no agent free
                await c.execute("""insert into calls (direction, agent_id, campaign_id, answered_at)
                                   values ('outbound', $1, $2, now())""", agent_id, campaign)
        event, _ = await next_event(ws, lambda e: e["type"] == "campaign" and e["campaign"]["answered_today"] == 4)
        assert (event["campaign"]["abandoned_today"], event["campaign"]["rate_30d"]) == (1, 0.25)


async def test_a_supervisor_deactivated_while_watching_is_disconnected(client, app_ctx, monkeypatch):
    from telesales.routes import wallboard

    monkeypatch.setattr(wallboard, "RECHECK_SECONDS", 0.2)
    sup = await make_user(app_ctx, "leaving_sup", "supervisor")
    session, _ = await logged_in(client, "leaving_sup")
    async with session, await open_board(session, client) as ws:
        await next_event(ws, lambda e: e["type"] == "snapshot")
        async with app_ctx.pool.acquire() as c:
            await c.execute("update users set active = false where id = $1", sup["id"])
        msg = await asyncio.wait_for(ws.receive(), 5)
        while msg.type == aiohttp.WSMsgType.TEXT:  # events already on their way
            msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
