"""Migration 0007: what the floor triggers NOTIFY, per statement, and what they leave out (history)."""

from __future__ import annotations

import asyncio
import json

import factories as make

from crm import db


async def _notices(db_url, conn, sql: str, *args) -> list[dict]:
    """Run sql on conn; the 'floor_events' notices it caused, as seen by another connection."""
    listener = await db.connect(db_url)
    got: list[dict] = []
    await listener.add_listener("floor_events", lambda *a: got.append(json.loads(a[3])))
    try:
        await conn.execute(sql, *args)
        await conn.execute("select pg_notify('floor_events', '{\"type\": \"end\"}')")  # arrives after ours
        for _ in range(200):
            if got and got[-1]["type"] == "end":
                break
            await asyncio.sleep(0.02)
    finally:
        await listener.close()
    assert got and got[-1]["type"] == "end"
    return got[:-1]


async def test_one_statement_one_notice_naming_each_agent_once(db_url, conn):
    a, b = await make.user(conn), await make.user(conn)
    notices = await _notices(db_url, conn, """insert into agent_status_log (user_id, status)
                                              select unnest($1::bigint[]), 'ready'""", [a, b])
    assert len(notices) == 1 and sorted(notices[0]["agents"]) == sorted([a, b])


async def test_history_written_in_bulk_sends_nothing(db_url, conn):
    agent = await make.user(conn)
    campaign = await make.campaign(conn)
    notices = await _notices(db_url, conn, """
        insert into calls (direction, agent_id, campaign_id, created_at, answered_at, ended_at)
        select 'outbound', $1, $2, now() - interval '40 days', now() - interval '40 days',
               now() - interval '40 days' + interval '1 minute' from generate_series(1, 2000)""", agent, campaign)
    assert notices == []


async def test_a_current_call_names_its_agent_and_campaign(db_url, conn):
    agent = await make.user(conn)
    campaign = await make.campaign(conn)
    notices = await _notices(db_url, conn, "insert into calls (direction, agent_id, campaign_id) values "
                             "('outbound', $1, $2)", agent, campaign)
    assert notices == [{"type": "floor", "agents": [agent], "campaigns": [campaign]}]


async def test_many_agents_at_once_ask_for_a_full_refresh(db_url, conn):
    ids = [await make.user(conn) for _ in range(201)]
    notices = await _notices(db_url, conn, "insert into agent_status_log (user_id, status) "
                             "select unnest($1::bigint[]), 'paused'", ids)
    assert notices == [{"type": "floor", "all": True}]
