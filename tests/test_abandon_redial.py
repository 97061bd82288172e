"""An abandoned number (answered, no agent free, disposition DROP) is not dialled again within 72 hours:
a compliance gate on the number, so it holds for the hopper, a callback and a click, in any campaign."""

from __future__ import annotations

import datetime as dt

import factories
import pytest

from crm import hopper
from crm.compliance import ABANDON_REDIAL_HOURS, DialFacts, check_dial, evaluate
from crm.dispositions import record_disposition
from telesales.dial_routes import dial_uri_for, parse_routes

UTC = dt.UTC
ANSWERED = dt.datetime(2026, 6, 10, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
RULES = hopper.HopperRules(default_region="CN", default_time_zone="Asia/Shanghai")
ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}


async def abandoned_call(conn, catalog, lead_id: int) -> str:
    """A dialler call on the lead, answered, dropped and dispositioned DROP as the predictive dialer does."""
    call_id = await factories.call(conn, lead_id, now=ANSWERED - dt.timedelta(seconds=8))
    await conn.execute("update calls set answered_at = $2, ended_at = $3 where id = $1::uuid", call_id,
                       ANSWERED, ANSWERED + dt.timedelta(seconds=4))
    await record_disposition(conn, catalog, {"code": "DROP", "call_id": call_id}, agent_id=None,
                             now=ANSWERED + dt.timedelta(seconds=4), **factories.RULES)
    return call_id


async def gates(conn, lead_id: int, now: dt.datetime) -> dict[str, dt.datetime | None]:
    campaign_id = await conn.fetchval("select campaign_id from leads where id = $1", lead_id)
    v = await check_dial(conn, campaign_id=campaign_id, lead_id=lead_id, now=now,
                         default_region="CN", default_time_zone="Asia/Shanghai")
    return {b.gate: b.until for b in v.blocks}


async def test_the_gate_holds_72_hours_from_the_answer_then_lifts(conn, catalog):
    campaign_id = await factories.campaign(conn, **ALL_DAY)
    lead_id = await factories.lead(conn, campaign_id)
    await abandoned_call(conn, catalog, lead_id)
    lifts = ANSWERED + dt.timedelta(hours=ABANDON_REDIAL_HOURS)

    for now in (ANSWERED + dt.timedelta(minutes=5), lifts - dt.timedelta(minutes=1)):
        assert (await gates(conn, lead_id, now)).get("recently_abandoned") == lifts
    assert "recently_abandoned" not in await gates(conn, lead_id, lifts)


async def test_the_same_number_in_another_campaign_is_held_too(conn, catalog):
    number = factories.phone()
    first = await factories.lead(conn, await factories.campaign(conn, **ALL_DAY), number=number)
    customer_id = await conn.fetchval("select customer_id from leads where id = $1", first)
    other = await factories.lead(conn, await factories.campaign(conn, **ALL_DAY), customer_id=customer_id,
                                 number=number)
    unrelated = await factories.lead(conn, await factories.campaign(conn, **ALL_DAY))
    await abandoned_call(conn, catalog, first)

    later = ANSWERED + dt.timedelta(hours=1)
    assert "recently_abandoned" in await gates(conn, other, later)
    assert await gates(conn, unrelated, later) == {}


async def test_the_hopper_holds_a_dropped_lead_even_as_a_due_callback(conn, catalog):
    """The DROP's retry rule already sets next_attempt_at 72 h ahead; with that reset and a callback
    due, only the gate stands between the number and a redial."""
    campaign_id = await factories.campaign(conn, **ALL_DAY)
    agent = await factories.user(conn)
    lead_id = await factories.lead(conn, campaign_id)
    await abandoned_call(conn, catalog, lead_id)
    assert await conn.fetchval("select next_attempt_at from leads where id = $1", lead_id) \
        == ANSWERED + dt.timedelta(seconds=4) + dt.timedelta(hours=72)
    await conn.execute("update leads set next_attempt_at = null where id = $1", lead_id)
    customer_id = await conn.fetchval("select customer_id from leads where id = $1", lead_id)
    await conn.execute(
        """insert into follow_ups (customer_id, lead_id, due_at, status, created_at)
           values ($1, $2, $3, 'open', $3)""", customer_id, lead_id, ANSWERED + dt.timedelta(hours=1))

    soon = ANSWERED + dt.timedelta(hours=2)
    assert await hopper.next_lead(conn, campaign_id=campaign_id, agent_id=agent, now=soon, rules=RULES) is None
    held = await conn.fetchval("select next_attempt_at from leads where id = $1", lead_id)
    assert held == ANSWERED + dt.timedelta(hours=72)

    pick = await hopper.next_lead(conn, campaign_id=campaign_id, agent_id=agent, now=held, rules=RULES)
    assert pick is not None and pick.lead_id == lead_id and pick.tier == "callback"


def test_the_rule_reads_without_a_database():
    facts = DialFacts(phone="+8613800138000", window_start=dt.time(0), window_end=dt.time(0),
                      max_attempts_per_day=9, max_attempts_total=9, min_retry_minutes=0, requires_consent=False,
                      allowed_prefixes=(), last_abandoned_at=ANSWERED)
    v = evaluate(facts, ANSWERED + dt.timedelta(hours=71), default_region="CN", default_time_zone="Asia/Shanghai")
    assert [b.gate for b in v.blocks] == ["recently_abandoned"] and "72 hours" in v.blocks[0].message
    assert evaluate(facts, ANSWERED + dt.timedelta(hours=72), default_region="CN",
                    default_time_zone="Asia/Shanghai").allowed


def test_dial_routes_pick_the_longest_prefix_then_dial_uri():
    from types import SimpleNamespace

    d = SimpleNamespace(dial_uri="sip:{number}@default.example",
                        dial_routes=["+86=sip:{number}@cn.example", "+8613800000001=sip:customer@127.0.0.1:5070"])
    assert dial_uri_for(d, "+8613800000001") == "sip:customer@127.0.0.1:5070"
    assert dial_uri_for(d, "+8613900000000") == "sip:+8613900000000@cn.example"
    assert dial_uri_for(d, "+14165550100") == "sip:+14165550100@default.example"
    assert dial_uri_for(SimpleNamespace(dial_uri="", dial_routes=[]), "+14165550100") is None
    with pytest.raises(ValueError, match="not"):
        parse_routes(["86=sip:x@y"])
