"""The lead hopper: callbacks, then new leads, then retries; gates hold leads back; claims keep two
agents off one lead."""

from __future__ import annotations

import asyncio
import datetime as dt

import factories
import pytest

from crm import db, dnc, hopper
from crm.dispositions import record_disposition
from crm.errors import Conflict, MissingFields

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
RULES = hopper.HopperRules(default_region="CN", default_time_zone="Asia/Shanghai")


async def pick(conn, campaign_id, agent_id, now=NOW):
    return await hopper.next_lead(conn, campaign_id=campaign_id, agent_id=agent_id, now=now, rules=RULES)


async def wrap_up(conn, catalog, lead_id, agent_id, code, now, **parts):
    return await record_disposition(conn, catalog, {"code": code, "lead_id": lead_id, **parts},
                                    agent_id=agent_id, now=now, **factories.RULES)


async def callback(conn, catalog, lead_id, agent_id, due, owner="me", now=None):
    now = now or due - dt.timedelta(hours=1)
    await conn.execute("update leads set status = 'NA' where id = $1", lead_id)  # worked before
    await wrap_up(conn, catalog, lead_id, agent_id, "CALLBACK", now,
                  follow_up={"due_at": due.isoformat(), "owner": owner})


async def test_due_callbacks_come_first_then_new_leads_by_priority_then_retries(conn, catalog):
    agent = await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    retry = await factories.lead(conn, campaign_id, status="NA", next_attempt_at=NOW - dt.timedelta(hours=1),
                                 priority=9)
    low = await factories.lead(conn, campaign_id)
    high = await factories.lead(conn, campaign_id, priority=5)
    cb = await factories.lead(conn, campaign_id)
    await callback(conn, catalog, cb, agent, due=NOW - dt.timedelta(minutes=5), now=NOW - dt.timedelta(hours=3))

    order = []
    for _ in range(4):
        p = await pick(conn, campaign_id, agent)
        order.append((p.lead_id, p.tier))
        await hopper.skip(conn, p.lead_id, agent_id=agent, reason="test", now=NOW, defer_minutes=60)
    assert order == [(cb, "callback"), (high, "new"), (low, "new"), (retry, "retry")]
    assert await pick(conn, campaign_id, agent) is None  # all skipped for an hour


async def test_a_callback_owned_by_another_agent_goes_only_to_its_owner_unless_the_campaign_shares(conn, catalog):
    owner, other = await factories.user(conn), await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    cb = await factories.lead(conn, campaign_id)
    await callback(conn, catalog, cb, owner, due=NOW - dt.timedelta(minutes=1), now=NOW - dt.timedelta(hours=2))

    assert await pick(conn, campaign_id, other) is None
    await conn.execute("update campaigns set callbacks_any_agent = true")
    p = await pick(conn, campaign_id, other)
    assert (p.lead_id, p.tier) == (cb, "callback")


async def test_an_anyone_callback_goes_to_any_agent(conn, catalog):
    creator, other = await factories.user(conn), await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    cb = await factories.lead(conn, campaign_id)
    await callback(conn, catalog, cb, creator, due=NOW - dt.timedelta(minutes=1), owner="anyone",
                   now=NOW - dt.timedelta(hours=2))
    assert (await pick(conn, campaign_id, other)).lead_id == cb


async def test_a_callback_not_yet_due_waits(conn, catalog):
    agent = await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    cb = await factories.lead(conn, campaign_id)
    await callback(conn, catalog, cb, agent, due=NOW + dt.timedelta(minutes=30), now=NOW - dt.timedelta(hours=1))
    assert await pick(conn, campaign_id, agent) is None
    assert (await pick(conn, campaign_id, agent, now=NOW + dt.timedelta(minutes=30))).lead_id == cb


async def test_a_callback_due_outside_the_calling_window_waits_for_it_to_open(conn, catalog):
    agent = await factories.user(conn)
    campaign_id = await factories.campaign(conn, min_retry_minutes=0)
    cb = await factories.lead(conn, campaign_id)
    late = dt.datetime(2026, 6, 10, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    await callback(conn, catalog, cb, agent, due=late)

    p = await pick(conn, campaign_id, agent, now=late + dt.timedelta(minutes=1))
    assert p is None
    opens = dt.datetime(2026, 6, 11, 1, 0, tzinfo=UTC)  # 09:00 next morning
    assert await conn.fetchval("select next_attempt_at from leads where id = $1", cb) == opens
    assert await pick(conn, campaign_id, agent, now=opens - dt.timedelta(minutes=1)) is None
    p = await pick(conn, campaign_id, agent, now=opens)
    assert (p.lead_id, p.tier) == (cb, "callback")


async def test_retries_follow_the_dispositions_retry_rules(conn, catalog):
    agent = await factories.user(conn)
    campaign_id = await factories.campaign(conn, min_retry_minutes=0)
    lead_id = await factories.lead(conn, campaign_id)
    await factories.call(conn, lead_id, now=NOW)
    await wrap_up(conn, catalog, lead_id, agent, "B", NOW)  # busy: retry after 30 minutes

    assert await pick(conn, campaign_id, agent, now=NOW + dt.timedelta(minutes=29)) is None
    p = await pick(conn, campaign_id, agent, now=NOW + dt.timedelta(minutes=30))
    assert (p.lead_id, p.tier) == (lead_id, "retry")


async def test_a_final_disposition_takes_the_lead_out_of_the_hopper(conn, catalog):
    agent = await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    lead_id = await factories.lead(conn, campaign_id)
    await wrap_up(conn, catalog, lead_id, agent, "NI", NOW)
    assert await pick(conn, campaign_id, agent, now=NOW + dt.timedelta(days=30)) is None


async def test_leads_the_gates_block_are_held_back_and_the_next_one_is_given(conn):
    agent = await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    listed = await factories.lead(conn, campaign_id, priority=9)
    abroad = await factories.lead(conn, campaign_id, number="+14165550100", priority=8)
    fine = await factories.lead(conn, campaign_id)
    phone = await conn.fetchval("select phone from leads where id = $1", listed)
    await dnc.add(conn, phone, "asked", source="customer_request", added_by=None)

    p = await pick(conn, campaign_id, agent)
    assert p.lead_id == fine and p.held_back == 2
    held = await conn.fetchval("select next_attempt_at from leads where id = $1", listed)
    assert held == NOW + dt.timedelta(minutes=RULES.blocked_recheck_minutes)
    assert await conn.fetchval("select next_attempt_at from leads where id = $1", abroad) == held


async def test_a_claimed_lead_is_not_given_to_another_agent_until_the_claim_expires(conn):
    first, second = await factories.user(conn), await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    lead_id = await factories.lead(conn, campaign_id)
    assert (await pick(conn, campaign_id, first)).lead_id == lead_id
    assert await pick(conn, campaign_id, second) is None
    assert (await pick(conn, campaign_id, first)).lead_id == lead_id  # a reload shows the same lead
    later = NOW + dt.timedelta(minutes=RULES.claim_minutes)
    assert (await pick(conn, campaign_id, second, now=later)).lead_id == lead_id


@pytest.mark.parametrize("leads", [1, 2])
async def test_two_agents_picking_at_once_never_get_the_same_lead(db_url, conn, leads):
    agents = [await factories.user(conn) for _ in range(2)]
    campaign_id = await factories.campaign(conn)
    ids = {await factories.lead(conn, campaign_id) for _ in range(leads)}
    pool = await db.create_pool(db_url, 2, 2)
    try:
        async def agent_picks(agent):
            async with pool.acquire() as c:
                return await pick(c, campaign_id, agent)

        picks = await asyncio.gather(*(agent_picks(a) for a in agents))
    finally:
        await pool.close()
    got = [p.lead_id for p in picks if p is not None]
    assert len(got) == len(set(got)) == leads and set(got) == ids
    claims = await conn.fetch("select id, claimed_by from leads where claimed_by is not null")
    assert len(claims) == leads and len({c["claimed_by"] for c in claims}) == leads


async def test_many_concurrent_picks_hand_out_each_lead_once(db_url, conn):
    agents = [await factories.user(conn) for _ in range(6)]
    campaign_id = await factories.campaign(conn)
    for _ in range(20):
        await factories.lead(conn, campaign_id)
    pool = await db.create_pool(db_url, 6, 6)
    try:
        async def shift(agent):
            got = []
            async with pool.acquire() as c:
                while (p := await pick(c, campaign_id, agent)) is not None:
                    got.append(p.lead_id)
                    await c.execute("update leads set closed = true, claimed_by = null where id = $1", p.lead_id)
            return got

        results = await asyncio.gather(*(shift(a) for a in agents))
    finally:
        await pool.close()
    handed = [lead for got in results for lead in got]
    assert len(handed) == len(set(handed)) == 20


async def test_skipping_needs_a_reason_and_your_own_claim(conn):
    agent, other = await factories.user(conn), await factories.user(conn)
    campaign_id = await factories.campaign(conn)
    lead_id = await factories.lead(conn, campaign_id)
    await pick(conn, campaign_id, agent)
    with pytest.raises(MissingFields):
        await hopper.skip(conn, lead_id, agent_id=agent, reason=" ", now=NOW, defer_minutes=60)
    with pytest.raises(Conflict):
        await hopper.skip(conn, lead_id, agent_id=other, reason="no", now=NOW, defer_minutes=60)
    await hopper.skip(conn, lead_id, agent_id=agent, reason="customer abroad this week", now=NOW, defer_minutes=60)
    audit = await conn.fetchrow("select * from audit_log where action = 'lead.skip'")
    assert audit["details"]["reason"] == "customer abroad this week"
    assert await pick(conn, campaign_id, other) is None
    assert (await pick(conn, campaign_id, other, now=NOW + dt.timedelta(hours=1))).lead_id == lead_id
