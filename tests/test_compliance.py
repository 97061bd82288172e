"""Compliance gates on a dial: do-not-call, the customer's local calling window, attempt limits,
the minimum interval, consent and the campaign's allowed destinations, against the real store."""

from __future__ import annotations

import datetime as dt

import factories
import pytest

from crm import dnc
from crm.campaigns import update_campaign
from crm.compliance import check_dial
from crm.errors import UserError
from crm.lead_import import import_leads

UTC = dt.UTC
# 10:00 in Shanghai (the default zone), 22:00 the evening before in New York (EDT).
MORNING_CN = dt.datetime(2026, 6, 10, 2, 0, tzinfo=UTC)
NY = "+12125550100"  # a Manhattan number: phonenumbers places it in America/New_York


async def verdict(conn, lead_id, now=MORNING_CN, campaign_id=None):
    campaign_id = campaign_id or await conn.fetchval("select campaign_id from leads where id = $1", lead_id)
    return await check_dial(conn, campaign_id=campaign_id, lead_id=lead_id, now=now,
                            default_region="CN", default_time_zone="Asia/Shanghai")


def gates(v) -> set[str]:
    return {b.gate for b in v.blocks}


async def test_a_new_lead_in_the_window_may_be_dialled(conn):
    v = await verdict(conn, await factories.lead(conn))
    assert v.allowed and v.blocks == () and v.time_zones == ("Asia/Shanghai",)


async def test_a_number_on_the_do_not_call_list_is_blocked_with_the_reason(conn):
    lead_id = await factories.lead(conn)
    phone = await conn.fetchval("select phone from leads where id = $1", lead_id)
    await dnc.add(conn, phone, "asked not to be called", source="customer_request", added_by=None)

    v = await verdict(conn, lead_id)
    assert not v.allowed and gates(v) == {"do_not_call"}
    assert "do-not-call" in v.blocks[0].message and v.blocks[0].until is None


async def test_a_do_not_call_number_inside_an_imported_list_is_blocked(conn):
    campaign_id = await factories.campaign(conn)
    listed, clean = "13800138111", "13800138222"
    await import_leads(conn, f"phone,name\n{listed},Li Lei\n{clean},Han Meimei\n".encode(),
                       file_name="leads.csv", campaign_id=campaign_id, region="CN", allowed_channels=[])
    # The regulator's list arrives after the import.
    await dnc.add(conn, "+86" + listed, "regulator list", source="regulator", added_by=None)
    leads = {r["phone"]: r["id"] for r in await conn.fetch("select id, phone from leads")}

    assert gates(await verdict(conn, leads["+86" + listed])) == {"do_not_call"}
    assert (await verdict(conn, leads["+86" + clean])).allowed


async def test_a_customer_flagged_do_not_call_is_blocked_on_every_number(conn):
    lead_id = await factories.lead(conn)
    await conn.execute("update customers set do_not_call = true")
    assert gates(await verdict(conn, lead_id)) == {"do_not_call"}


async def test_a_customer_in_another_zone_is_called_in_their_own_window(conn):
    campaign_id = await factories.campaign(conn, allowed_prefixes=["+86", "+1"])
    shanghai = await factories.lead(conn, campaign_id)
    new_york = await factories.lead(conn, campaign_id, number=NY)

    assert (await verdict(conn, shanghai)).allowed  # 10:00 there
    v = await verdict(conn, new_york)  # 22:00 there
    assert gates(v) == {"outside_calling_window"} and v.time_zones == ("America/New_York",)
    assert v.blocks[0].until == dt.datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 09:00 EDT
    assert "22:00 in America/New_York" in v.blocks[0].message


async def test_the_zone_on_the_customers_record_wins_over_the_numbers_region(conn):
    lead_id = await factories.lead(conn)  # a Shanghai mobile
    await conn.execute("update customers set time_zone = 'Europe/Berlin'")
    v = await verdict(conn, lead_id)  # 04:00 in Berlin
    assert gates(v) == {"outside_calling_window"}
    assert v.blocks[0].until == dt.datetime(2026, 6, 10, 7, 0, tzinfo=UTC)  # 09:00 CEST


@pytest.mark.parametrize(
    ("now", "opens"),
    [
        # The evening before spring-forward (2026-03-08): 09:00 next day is already EDT (UTC-4).
        (dt.datetime(2026, 3, 8, 4, 0, tzinfo=UTC), dt.datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        # The evening before fall-back (2026-11-01): 09:00 next day is EST again (UTC-5).
        (dt.datetime(2026, 11, 1, 2, 0, tzinfo=UTC), dt.datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    ],
    ids=["spring_forward", "fall_back"],
)
async def test_the_window_opens_at_nine_local_across_a_dst_change(conn, now, opens):
    campaign_id = await factories.campaign(conn, allowed_prefixes=["+1"])
    v = await verdict(conn, await factories.lead(conn, campaign_id, number=NY), now=now)
    assert gates(v) == {"outside_calling_window"} and v.blocks[0].until == opens
    assert (await verdict(conn, await conn.fetchval("select id from leads"), now=opens)).allowed


async def test_the_campaigns_own_window_applies(conn):
    campaign_id = await factories.campaign(conn, calling_window_start=dt.time(11), calling_window_end=dt.time(18))
    v = await verdict(conn, await factories.lead(conn, campaign_id))  # 10:00 local
    assert gates(v) == {"outside_calling_window"}
    assert v.blocks[0].until == dt.datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
    assert "11:00-18:00" in v.blocks[0].message


async def test_the_daily_attempt_limit_lifts_at_the_next_day(conn):
    campaign_id = await factories.campaign(conn, max_attempts_per_day=2, min_retry_minutes=0)
    lead_id = await factories.lead(conn, campaign_id)
    for minutes in (0, 5):
        await factories.call(conn, lead_id, now=MORNING_CN - dt.timedelta(hours=1, minutes=minutes))

    v = await verdict(conn, lead_id)
    assert gates(v) == {"max_attempts_per_day"}
    assert v.blocks[0].until == dt.datetime(2026, 6, 11, tzinfo=UTC)
    # Yesterday's attempts do not count today.
    assert (await verdict(conn, lead_id, now=MORNING_CN + dt.timedelta(days=1))).allowed


async def test_the_lifetime_attempt_limit_blocks_for_good(conn):
    campaign_id = await factories.campaign(conn, max_attempts_total=2, min_retry_minutes=0)
    lead_id = await factories.lead(conn, campaign_id)
    for days in (3, 2):
        await factories.call(conn, lead_id, now=MORNING_CN - dt.timedelta(days=days))
    v = await verdict(conn, lead_id)
    assert gates(v) == {"max_attempts_total"} and v.blocks[0].until is None


async def test_the_minimum_interval_between_attempts_holds(conn):
    campaign_id = await factories.campaign(conn, min_retry_minutes=60)
    lead_id = await factories.lead(conn, campaign_id)
    await factories.call(conn, lead_id, now=MORNING_CN - dt.timedelta(minutes=20))

    v = await verdict(conn, lead_id)
    assert gates(v) == {"min_interval"}
    assert v.blocks[0].until == MORNING_CN + dt.timedelta(minutes=40)
    assert (await verdict(conn, lead_id, now=v.blocks[0].until)).allowed


async def test_the_interval_also_counts_calls_without_a_lead(conn):
    campaign_id = await factories.campaign(conn, min_retry_minutes=60)
    customer_id = await factories.customer(conn, phones=["+8613800138999"])
    await conn.execute(
        """insert into calls (direction, campaign_id, customer_id, to_number, created_at)
           values ('outbound', $1, $2, $3, $4)""",
        campaign_id, customer_id, "+8613800138999", MORNING_CN - dt.timedelta(minutes=10))
    v = await check_dial(conn, campaign_id=campaign_id, customer_id=customer_id, phone="+8613800138999",
                         now=MORNING_CN, default_region="CN", default_time_zone="Asia/Shanghai")
    assert gates(v) == {"min_interval"}


async def test_consent_is_needed_where_the_campaign_requires_it(conn):
    campaign_id = await factories.campaign(conn, requires_consent=True)
    lead_id = await factories.lead(conn, campaign_id)
    v = await verdict(conn, lead_id)
    assert gates(v) == {"no_consent"} and v.blocks[0].until is None

    await conn.execute("update customers set consent = true, consent_at = now()")
    assert (await verdict(conn, lead_id)).allowed


async def test_international_numbers_are_blocked_unless_the_campaign_allows_them(conn):
    domestic_only = await factories.campaign(conn)
    v = await verdict(conn, await factories.lead(conn, domestic_only, number="+14165550100"),
                      now=dt.datetime(2026, 6, 10, 15, 0, tzinfo=UTC))  # 11:00 in Toronto
    assert gates(v) == {"destination_not_allowed"} and "+86" in v.blocks[0].message

    with_canada = await factories.campaign(conn, allowed_prefixes=["+86", "+1416"])
    v = await verdict(conn, await factories.lead(conn, with_canada, number="+14165550101"),
                      now=dt.datetime(2026, 6, 10, 15, 0, tzinfo=UTC))
    assert v.allowed


async def test_an_allow_pattern_narrower_than_the_country_blocks_the_rest(conn):
    shanghai_lines = await factories.campaign(conn, allowed_prefixes=["+8621"])
    assert gates(await verdict(conn, await factories.lead(conn, shanghai_lines))) == {"destination_not_allowed"}
    assert (await verdict(conn, await factories.lead(conn, shanghai_lines, number="+862150001000"))).allowed


async def test_every_blocking_gate_is_reported_at_once(conn):
    campaign_id = await factories.campaign(conn, requires_consent=True, min_retry_minutes=60)
    lead_id = await factories.lead(conn, campaign_id)
    await factories.call(conn, lead_id, now=MORNING_CN - dt.timedelta(minutes=5))
    phone = await conn.fetchval("select phone from leads where id = $1", lead_id)
    await dnc.add(conn, phone, "asked", source="agent", added_by=None)
    v = await verdict(conn, lead_id, now=MORNING_CN + dt.timedelta(hours=12))  # 22:00 local
    assert gates(v) == {"do_not_call", "no_consent", "outside_calling_window"}
    assert v.not_before is None  # do-not-call needs a person


async def test_bad_allow_patterns_are_refused(conn):
    campaign_id = await factories.campaign(conn)
    for bad in (["86"], ["+86x"], "+86", [""]):
        with pytest.raises(UserError, match="E.164 prefixes"):
            await update_campaign(conn, campaign_id, allowed_prefixes=bad)
    row = await update_campaign(conn, campaign_id, allowed_prefixes=["+86", "+852"], callbacks_any_agent=True)
    assert row["allowed_prefixes"] == ["+86", "+852"] and row["callbacks_any_agent"]
