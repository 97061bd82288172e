"""Recording dispositions: each code's rule, the 422s and 409s, and all-or-nothing writes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factories as make
import pytest

from crm.dispositions import describe, record_disposition
from crm.errors import UserError

TABLES = (
    "call_dispositions",
    "orders",
    "follow_ups",
    "complaints",
    "complaint_events",
    "do_not_call",
    "interactions",
    "audit_log",
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


async def wrap_up(conn, catalog, request, agent_id, *, at=None, **kw):
    return await record_disposition(
        conn, catalog, request, agent_id=agent_id, now=at or now(), **make.RULES, **kw
    )


async def counts(conn) -> dict:
    return {t: await make.count(conn, t) for t in TABLES}


async def expect_error(coro, status: int, error_id: str | None = None) -> UserError:
    with pytest.raises(UserError) as info:
        await coro
    assert info.value.status == status, info.value.to_json()
    if error_id:
        assert info.value.error_id == error_id, info.value.to_json()
    return info.value


@pytest.fixture
async def setup(conn):
    """An agent, a lead and an outbound call of that agent on the lead."""
    agent = await make.user(conn, "agent")
    lead = await make.lead(conn)
    call = await make.call(conn, lead, agent)
    return agent, lead, call


def order(**overrides) -> dict:
    o = {
        "product": "Water filter",
        "quantity": 2,
        "unit_price": "199.90",
        "delivery_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
        "delivery_address": "88 Nanjing Rd, Shanghai",
        "payment_method": "alipay",
    }
    o.update(overrides)
    return {k: v for k, v in o.items() if v is not None}


# --- SALE -------------------------------------------------------------------


async def test_sale_without_order_is_422_naming_every_missing_field_and_writes_nothing(
    conn, catalog, setup
):
    agent, lead, call = setup
    before = await counts(conn)
    err = await expect_error(
        wrap_up(conn, catalog, {"code": "SALE", "call_id": call}, agent), 422, "missing_fields"
    )
    assert err.fields == [
        "order.product",
        "order.quantity",
        "order.unit_price",
        "order.delivery_date",
        "order.delivery_address",
        "order.payment_method",
    ]
    assert await counts(conn) == before
    row = await conn.fetchrow("select status, closed from leads where id = $1", lead)
    assert (row["status"], row["closed"]) == ("new", False)
    assert await conn.fetchval("select disposition from calls where id = $1::uuid", call) is None


async def test_sale_with_partial_order_names_only_the_missing_fields(conn, catalog, setup):
    agent, _, call = setup
    err = await expect_error(
        wrap_up(
            conn,
            catalog,
            {"code": "SALE", "call_id": call, "order": order(unit_price=None, delivery_date=None)},
            agent,
        ),
        422,
        "missing_fields",
    )
    assert err.fields == ["order.unit_price", "order.delivery_date"]


async def test_sale_with_bad_order_values_is_422_naming_each_bad_field(conn, catalog, setup):
    agent, _, call = setup
    before = await counts(conn)
    err = await expect_error(
        wrap_up(
            conn,
            catalog,
            {
                "code": "SALE",
                "call_id": call,
                "order": order(
                    quantity=0, unit_price="-5", payment_method="barter", delivery_date="31/12/2030"
                ),
            },
            agent,
        ),
        422,
    )
    assert set(err.fields) == {
        "order.quantity",
        "order.unit_price",
        "order.payment_method",
        "order.delivery_date",
    }
    assert await counts(conn) == before

    yesterday = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    err = await expect_error(
        wrap_up(
            conn,
            catalog,
            {"code": "SALE", "call_id": call, "order": order(delivery_date=yesterday)},
            agent,
        ),
        422,
    )
    assert err.fields == ["order.delivery_date"]
    err = await expect_error(
        wrap_up(
            conn,
            catalog,
            {"code": "SALE", "call_id": call, "order": order(unit_price="1.999")},
            agent,
        ),
        422,
    )
    assert err.fields == ["order.unit_price"]


async def test_sale_with_order_writes_the_order_closes_the_lead_and_sets_the_call_disposition(
    conn, catalog, setup
):
    agent, lead, call = setup
    result = await wrap_up(
        conn, catalog, {"code": "SALE", "call_id": call, "note": "happy", "order": order()}, agent
    )
    assert result["lead_status"] == "SALE" and result["closed"] is True
    assert result["next_attempt_at"] is None and result["lead_id"] == lead

    o = await conn.fetchrow("select * from orders where id = $1", result["order_id"])
    assert o["product"] == "Water filter" and o["quantity"] == Decimal("2")
    assert o["unit_price"] == Decimal("199.90") and o["total"] == Decimal("399.80")
    assert o["currency"] == "CNY" and o["status"] == "confirmed"
    assert str(o["call_id"]) == call and o["lead_id"] == lead and o["agent_id"] == agent

    row = await conn.fetchrow("select * from leads where id = $1", lead)
    assert row["status"] == "SALE" and row["closed"] and row["next_attempt_at"] is None
    assert await conn.fetchval("select disposition from calls where id = $1::uuid", call) == "SALE"
    cd = await conn.fetchrow(
        "select * from call_dispositions where id = $1", result["disposition_id"]
    )
    assert (cd["code"], cd["note"], cd["agent_id"]) == ("SALE", "happy", agent)

    kinds = [r["kind"] for r in await conn.fetch("select kind from interactions order by id")]
    assert sorted(kinds) == ["call", "order"]
    audit = await conn.fetch("select * from audit_log where action = 'disposition.record'")
    assert len(audit) == 1 and audit[0]["user_id"] == agent
    assert audit[0]["entity_id"] == str(result["disposition_id"])


async def test_sale_takes_unit_price_as_exact_decimal_never_float(conn, catalog, setup):
    agent, _, call = setup
    result = await wrap_up(
        conn,
        catalog,
        {"code": "SALE", "call_id": call, "order": order(quantity=3, unit_price=0.1)},
        agent,
    )
    assert await conn.fetchval(
        "select total from orders where id = $1", result["order_id"]
    ) == Decimal("0.30")


# --- CALLBACK ---------------------------------------------------------------


async def test_callback_without_due_time_is_422_and_writes_nothing(conn, catalog, setup):
    agent, _, call = setup
    before = await counts(conn)
    err = await expect_error(
        wrap_up(conn, catalog, {"code": "CALLBACK", "call_id": call}, agent), 422, "missing_fields"
    )
    assert err.fields == ["follow_up.due_at"]
    assert await counts(conn) == before


async def test_callback_due_in_the_past_or_without_offset_is_422(conn, catalog, setup):
    agent, _, call = setup
    at = now()
    for due in ((at - dt.timedelta(minutes=1)).isoformat(), "2099-01-01T10:00:00", "tomorrow"):
        err = await expect_error(
            wrap_up(
                conn,
                catalog,
                {"code": "CALLBACK", "call_id": call, "follow_up": {"due_at": due}},
                agent,
                at=at,
            ),
            422,
        )
        assert err.fields == ["follow_up.due_at"], due


async def test_callback_creates_follow_up_and_sets_next_attempt_and_owner_to_the_agent(
    conn, catalog, setup
):
    agent, lead, call = setup
    at = now()
    due = (at + dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    result = await wrap_up(
        conn,
        catalog,
        {
            "code": "CALLBACK",
            "call_id": call,
            "note": "after lunch",
            "follow_up": {"due_at": due.isoformat()},
        },
        agent,
        at=at,
    )
    fu = await conn.fetchrow("select * from follow_ups where id = $1", result["follow_up_id"])
    assert fu["due_at"] == due and fu["owner_agent_id"] == agent and fu["status"] == "open"
    assert fu["note"] == "after lunch" and fu["lead_id"] == lead and str(fu["call_id"]) == call
    row = await conn.fetchrow("select * from leads where id = $1", lead)
    assert row["next_attempt_at"] == due and row["owner_agent_id"] == agent
    assert row["status"] == "CALLBACK" and not row["closed"]
    assert result["next_attempt_at"] == due.isoformat()


async def test_callback_for_anyone_leaves_the_follow_up_and_lead_unowned(conn, catalog, setup):
    agent, lead, call = setup
    due = (now() + dt.timedelta(hours=3)).isoformat()
    result = await wrap_up(
        conn,
        catalog,
        {"code": "CALLBACK", "call_id": call, "follow_up": {"due_at": due, "owner": "anyone"}},
        agent,
    )
    assert (
        await conn.fetchval(
            "select owner_agent_id from follow_ups where id = $1", result["follow_up_id"]
        )
        is None
    )
    assert await conn.fetchval("select owner_agent_id from leads where id = $1", lead) is None


async def test_new_callback_replaces_the_leads_open_follow_up(conn, catalog, setup):
    agent, lead, call = setup
    first = await wrap_up(
        conn,
        catalog,
        {
            "code": "CALLBACK",
            "call_id": call,
            "follow_up": {"due_at": (now() + dt.timedelta(days=2)).isoformat()},
        },
        agent,
    )
    second_call = await make.call(conn, lead, agent)
    await wrap_up(
        conn,
        catalog,
        {
            "code": "CALLBACK",
            "call_id": second_call,
            "follow_up": {"due_at": (now() + dt.timedelta(days=5)).isoformat()},
        },
        agent,
    )
    assert (
        await conn.fetchval("select status from follow_ups where id = $1", first["follow_up_id"])
        == "cancelled"
    )
    assert await conn.fetchval("select count(*) from follow_ups where status = 'open'") == 1


# --- COMPLAINT --------------------------------------------------------------


async def test_complaint_creates_a_new_complaint_with_due_dates_and_its_first_event(
    conn, catalog, setup
):
    agent, lead, call = setup
    at = now()
    result = await wrap_up(
        conn,
        catalog,
        {
            "code": "COMPLAINT",
            "call_id": call,
            "complaint": {
                "complainant": "Wang Fang",
                "content": "Parcel arrived broken",
                "department": "logistics",
            },
        },
        agent,
        at=at,
    )
    c = await conn.fetchrow("select * from complaints where id = $1", result["complaint_id"])
    assert c["state"] == "new" and c["channel"] == "phone" and c["department"] == "logistics"
    assert c["received_at"] == at
    assert c["ack_due_at"] == at + dt.timedelta(hours=24)
    assert c["resolve_due_at"] == at + dt.timedelta(hours=72)
    assert str(c["call_id"]) == call and c["created_by"] == agent
    events = await conn.fetch("select * from complaint_events where complaint_id = $1", c["id"])
    assert [(e["from_state"], e["to_state"], e["user_id"]) for e in events] == [
        (None, "new", agent)
    ]
    assert await conn.fetchval("select closed from leads where id = $1", lead)


async def test_complaint_without_its_parts_is_422_naming_them(conn, catalog, setup):
    agent, lead, _ = setup
    err = await expect_error(
        wrap_up(
            conn,
            catalog,
            {"code": "COMPLAINT", "lead_id": lead, "complaint": {"content": " "}},
            agent,
        ),
        422,
        "missing_fields",
    )
    # no call: the channel is not implied
    assert err.fields == ["complaint.complainant", "complaint.channel", "complaint.content"]
    err = await expect_error(
        wrap_up(
            conn,
            catalog,
            {
                "code": "COMPLAINT",
                "lead_id": lead,
                "complaint": {
                    "complainant": "W",
                    "channel": "pigeon",
                    "content": "x",
                    "department": "marketing",
                },
            },
            agent,
        ),
        422,
    )
    assert err.fields == ["complaint.channel", "complaint.department"]


# --- DNC --------------------------------------------------------------------


async def test_dnc_puts_the_leads_number_on_the_list_and_flags_the_customer(conn, catalog, setup):
    agent, lead, call = setup
    number, customer = await conn.fetchrow(
        "select phone, customer_id from leads where id = $1", lead
    )
    result = await wrap_up(
        conn, catalog, {"code": "DNC", "call_id": call, "note": "asked never to be called"}, agent
    )
    assert result["dnc_number"] == number
    entry = await conn.fetchrow("select * from do_not_call where e164 = $1", number)
    assert entry["reason"] == "asked never to be called" and entry["source"] == "agent"
    assert entry["added_by"] == agent
    assert await conn.fetchval("select do_not_call from customers where id = $1", customer)
    assert await conn.fetchval("select closed from leads where id = $1", lead)


async def test_dnc_of_an_already_listed_number_keeps_the_first_entry(conn, catalog, setup):
    agent, lead, call = setup
    number = await conn.fetchval("select phone from leads where id = $1", lead)
    await conn.execute(
        "insert into do_not_call (e164, reason, source) values ($1, 'regulator list', 'regulator')",
        number,
    )
    await wrap_up(conn, catalog, {"code": "DNC", "call_id": call}, agent)
    assert (
        await conn.fetchval("select source from do_not_call where e164 = $1", number) == "regulator"
    )


# --- retry codes ------------------------------------------------------------


async def test_no_answer_schedules_the_next_attempt_120_minutes_later(conn, catalog, setup):
    agent, lead, call = setup
    at = now()
    result = await wrap_up(conn, catalog, {"code": "NA", "call_id": call}, agent, at=at)
    row = await conn.fetchrow("select * from leads where id = $1", lead)
    assert row["next_attempt_at"] == at + dt.timedelta(minutes=120)
    assert row["status"] == "NA" and not row["closed"] and row["attempts_total"] == 1
    assert (
        result["closed"] is False
        and result["next_attempt_at"] == (at + dt.timedelta(minutes=120)).isoformat()
    )


async def test_no_answer_on_the_eighth_attempt_closes_the_lead(conn, catalog):
    agent = await make.user(conn)
    lead = await make.lead(conn, attempts_total=6)
    call = await make.call(conn, lead, agent)  # 7th attempt
    result = await wrap_up(conn, catalog, {"code": "NA", "call_id": call}, agent)
    assert result["closed"] is False
    call = await make.call(conn, lead, agent)  # 8th: NA's max_attempts
    result = await wrap_up(conn, catalog, {"code": "NA", "call_id": call}, agent)
    assert result["closed"] is True and result["closed_by"] == "max_attempts"
    row = await conn.fetchrow("select * from leads where id = $1", lead)
    assert row["closed"] and row["next_attempt_at"] is None and row["attempts_total"] == 8


async def test_campaign_attempt_limit_closes_the_lead_before_the_codes_own(conn, catalog):
    agent = await make.user(conn)
    lead = await make.lead(conn, await make.campaign(conn, max_attempts_total=2))
    await wrap_up(
        conn, catalog, {"code": "B", "call_id": await make.call(conn, lead, agent)}, agent
    )
    result = await wrap_up(
        conn, catalog, {"code": "B", "call_id": await make.call(conn, lead, agent)}, agent
    )
    assert result["closed"] is True and result["closed_by"] == "max_attempts"


async def test_campaign_minimum_retry_gap_is_a_floor_for_short_retry_codes(conn, catalog, setup):
    agent, lead, call = setup  # campaign min_retry_minutes = 60, Busy retries after 30
    at = now()
    await wrap_up(conn, catalog, {"code": "B", "call_id": call}, agent, at=at)
    assert await conn.fetchval(
        "select next_attempt_at from leads where id = $1", lead
    ) == at + dt.timedelta(minutes=60)


async def test_a_closed_lead_is_not_reopened_by_a_later_wrap_up(conn, catalog, setup):
    agent, lead, call = setup
    await wrap_up(conn, catalog, {"code": "DNC", "call_id": call}, agent)
    inbound = await make.call(conn, lead, agent, direction="inbound")
    result = await wrap_up(conn, catalog, {"code": "NA", "call_id": inbound}, agent)
    assert result["closed"] is True and result["closed_by"] == "already_closed"
    row = await conn.fetchrow("select * from leads where id = $1", lead)
    assert row["closed"] and row["next_attempt_at"] is None


# --- request errors ---------------------------------------------------------


async def test_unknown_code_is_422_listing_the_valid_codes(conn, catalog, setup):
    agent, _, call = setup
    before = await counts(conn)
    err = await expect_error(
        wrap_up(conn, catalog, {"code": "MAYBE", "call_id": call}, agent),
        422,
        "unknown_disposition",
    )
    assert err.to_json()["valid_codes"] == sorted(catalog)
    assert "SALE" in err.message
    assert await counts(conn) == before


async def test_disposition_without_lead_or_call_is_422(conn, catalog):
    err = await expect_error(wrap_up(conn, catalog, {"code": "NA"}, None), 422, "missing_fields")
    assert err.fields == ["lead_id", "call_id"]


async def test_parts_a_code_does_not_take_are_refused(conn, catalog, setup):
    agent, _, call = setup
    err = await expect_error(
        wrap_up(conn, catalog, {"code": "NA", "call_id": call, "order": order()}, agent), 422
    )
    assert err.fields == ["order"]


async def test_second_disposition_of_one_call_is_409_and_changes_nothing(conn, catalog, setup):
    agent, lead, call = setup
    await wrap_up(conn, catalog, {"code": "NA", "call_id": call}, agent)
    before = await counts(conn)
    lead_before = await conn.fetchrow("select * from leads where id = $1", lead)
    err = await expect_error(
        wrap_up(conn, catalog, {"code": "SALE", "call_id": call, "order": order()}, agent),
        409,
        "already_dispositioned",
    )
    assert err.to_json()["existing_code"] == "NA"
    assert await counts(conn) == before
    assert await conn.fetchrow("select * from leads where id = $1", lead) == lead_before


async def test_unknown_call_or_lead_is_404(conn, catalog):
    await expect_error(wrap_up(conn, catalog, {"code": "NA", "lead_id": 999}, None), 404)
    await expect_error(
        wrap_up(
            conn, catalog, {"code": "NA", "call_id": "00000000-0000-0000-0000-000000000000"}, None
        ),
        404,
    )
    await expect_error(wrap_up(conn, catalog, {"code": "NA", "call_id": "nope"}, None), 422)


async def test_lead_that_is_not_the_calls_lead_is_422(conn, catalog, setup):
    agent, _, call = setup
    other = await make.lead(conn)
    err = await expect_error(
        wrap_up(conn, catalog, {"code": "NA", "call_id": call, "lead_id": other}, agent), 422
    )
    assert err.fields == ["lead_id"]


async def test_agents_may_only_wrap_up_their_own_calls(conn, catalog, setup):
    _, _, call = setup
    other = await make.user(conn)
    await expect_error(
        wrap_up(conn, catalog, {"code": "NA", "call_id": call}, other, own_calls_only=True),
        403,
        "not_your_call",
    )


async def test_a_failure_at_the_last_write_leaves_nothing_written(conn, catalog, setup):
    agent, lead, call = setup
    await conn.execute("""
        create function refuse() returns trigger language plpgsql as
        $$ begin raise exception 'disk on fire'; end $$;
        create trigger refuse before insert on audit_log for each row execute function refuse();""")
    before = await counts(conn)
    lead_before = await conn.fetchrow("select * from leads where id = $1", lead)
    with pytest.raises(Exception, match="disk on fire"):
        await wrap_up(conn, catalog, {"code": "SALE", "call_id": call, "order": order()}, agent)
    assert await counts(conn) == before
    assert await conn.fetchrow("select * from leads where id = $1", lead) == lead_before
    assert await conn.fetchval("select disposition from calls where id = $1::uuid", call) is None


# --- without a call ---------------------------------------------------------


async def test_lead_worked_without_a_call_gets_a_note_on_the_customers_record(conn, catalog):
    agent = await make.user(conn)
    lead = await make.lead(conn)
    result = await wrap_up(
        conn, catalog, {"code": "WN", "lead_id": lead, "note": "a bakery"}, agent
    )
    assert result["call_id"] is None and result["closed"] is True
    row = await conn.fetchrow("select kind, summary from interactions")
    assert row["kind"] == "note" and row["summary"] == "Wrong number: a bakery"


async def test_inbound_call_without_a_lead_records_against_the_calls_customer(conn, catalog):
    agent = await make.user(conn)
    customer = await make.customer(conn)
    call = await make.call(
        conn, None, agent, direction="inbound", customer_id=customer, from_number=make.phone()
    )
    result = await wrap_up(conn, catalog, {"code": "INFO", "call_id": call}, agent)
    assert result["customer_id"] == customer and result["lead_id"] is None
    assert result["lead_status"] is None


def test_describe_lists_each_code_with_what_it_requires(catalog):
    by_code = {d["code"]: d for d in describe(catalog)}
    assert by_code["SALE"]["requires"] == ["order"] and by_code["SALE"]["final"]
    assert by_code["CALLBACK"]["requires"] == ["follow_up"]
    assert by_code["NA"]["retry_after_minutes"] == 120 and by_code["NA"]["max_attempts"] == 8
