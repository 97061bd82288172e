"""Customers and their numbers, the customer file, surveys and the do-not-call list."""

from __future__ import annotations

import datetime as dt

import factories as make
import pytest

from crm import customers, dnc, surveys
from crm.dispositions import record_disposition
from crm.errors import UserError


async def test_create_customer_stores_numbers_as_e164_read_in_the_region(conn):
    c = await customers.create_customer(
        conn,
        name="Chen Wei",
        company="Acme",
        phones=["138 0013 8000", {"number": "+886 2 2345 6789", "label": "office"}],
        default_region="CN",
        user_id=None,
        tags=["vip", "vip", " b2b "],
        consent=True,
    )
    assert [(p["e164"], p["label"], p["is_primary"]) for p in c["phones"]] == [
        ("+8613800138000", "phone", True),
        ("+886223456789", "office", False),
    ]
    assert c["tags"] == ["b2b", "vip"] and c["consent"] and c["consent_at"] is not None
    assert await conn.fetchval("select action from audit_log") == "customer.create"


async def test_a_number_of_another_customer_is_409_and_nothing_is_created(conn):
    await customers.create_customer(
        conn, name="A", phones=["13800138000"], default_region="CN", user_id=None
    )
    with pytest.raises(UserError) as info:
        await customers.create_customer(
            conn, name="B", phones=["+86 138-0013-8000"], default_region="CN", user_id=None
        )
    assert info.value.status == 409 and "+8613800138000" in info.value.message
    assert await make.count(conn, "customers") == 1


async def test_an_invalid_number_or_field_is_422_naming_it(conn):
    with pytest.raises(UserError) as info:
        await customers.create_customer(
            conn, name="A", phones=["13800138000", "12"], default_region="CN", user_id=None
        )
    assert info.value.fields == ["phones[1]"]
    with pytest.raises(UserError) as info:
        await customers.create_customer(
            conn,
            name="A",
            phones=[],
            default_region="CN",
            user_id=None,
            email="nope",
            time_zone="Mars/Base",
            source_channel="tv",
            source_channels=["referral"],
        )
    assert set(info.value.fields) == {"email", "time_zone", "source_channel"}


async def test_update_changes_fields_and_replaces_numbers(conn):
    c = await customers.create_customer(
        conn, name="A", phones=["13800138000", "13900139000"], default_region="CN", user_id=None
    )
    c = await customers.update_customer(
        conn,
        c["id"],
        {"name": "Anna", "phones": ["13900139000"]},
        default_region="CN",
        user_id=None,
    )
    assert c["name"] == "Anna" and [p["e164"] for p in c["phones"]] == ["+8613900139000"]
    assert (await customers.find_by_phone(conn, "+8613800138000")) is None
    with pytest.raises(UserError) as info:
        await customers.update_customer(conn, 999, {"name": "x"}, default_region="CN", user_id=None)
    assert info.value.status == 404


async def test_customer_file_shows_calls_with_dispositions_orders_complaints_and_history_in_order(
    conn, catalog
):
    agent = await make.user(conn)
    number = make.phone()
    customer = await make.customer(conn, "Li Na", [number])
    lead = await make.lead(conn, customer_id=customer, number=number)
    t0 = dt.datetime.now(dt.UTC)
    first = await make.call(conn, lead, agent, now=t0)
    await record_disposition(
        conn,
        catalog,
        {
            "code": "CALLBACK",
            "call_id": first,
            "follow_up": {"due_at": (t0 + dt.timedelta(hours=2)).isoformat()},
        },
        agent_id=agent,
        now=t0,
        **make.RULES,
    )
    t1 = t0 + dt.timedelta(hours=2)
    second = await make.call(conn, lead, agent, now=t1)
    await record_disposition(
        conn,
        catalog,
        {
            "code": "SALE",
            "call_id": second,
            "order": {
                "product": "Tea set",
                "quantity": 1,
                "unit_price": "88.00",
                "delivery_date": (t1 + dt.timedelta(days=2)).date().isoformat(),
                "delivery_address": "1 Tea St",
                "payment_method": "cash_on_delivery",
            },
        },
        agent_id=agent,
        now=t1,
        **make.RULES,
    )
    await surveys.record_answers(
        conn,
        customer_id=customer,
        survey="csat",
        call_id=None,
        answers=[{"question": "How did we do?", "score": 9}],
        now=t1 + dt.timedelta(minutes=5),
    )

    f = await customers.customer_file(conn, customer)
    assert f["customer"]["name"] == "Li Na" and f["customer"]["phones"][0]["e164"] == number
    assert [(c["disposition"], c["agent_id"]) for c in f["calls"]] == [
        ("CALLBACK", agent),
        ("SALE", agent),
    ]
    assert f["calls"][1]["disposition_label"] == "Sale"
    assert [o["product"] for o in f["orders"]] == ["Tea set"]
    assert [(x["status"]) for x in f["follow_ups"]] == ["done"]  # the callback was made
    assert [(x["status"], x["closed"]) for x in f["leads"]] == [("SALE", True)]
    assert [i["kind"] for i in f["interactions"]] == ["call", "call", "order", "survey"]
    times = [i["occurred_at"] for i in f["interactions"]]
    assert times == sorted(times)
    assert f["open_complaints"] == [] and f["do_not_call"] == []


async def test_survey_scores_must_be_0_to_10(conn):
    customer = await make.customer(conn)
    with pytest.raises(UserError) as info:
        await surveys.record_answers(
            conn, customer_id=customer, survey="csat", answers=[{"question": "q", "score": 11}]
        )
    assert info.value.fields == ["answers[0].score"]
    assert await make.count(conn, "survey_answers") == 0


async def test_dnc_entry_flags_the_numbers_customer_and_removal_clears_it(conn):
    admin = await make.user(conn, "admin")
    number = make.phone()
    customer = await make.customer(conn, phones=[number])
    entry, created = await dnc.add(
        conn, number, "regulator list 2030-05", source="regulator", added_by=admin
    )
    assert created and entry["source"] == "regulator"
    assert await conn.fetchval("select do_not_call from customers where id = $1", customer)
    _, created = await dnc.add(conn, number, "again", source="agent", added_by=admin)
    assert not created
    assert (await dnc.lookup(conn, number))["reason"] == "regulator list 2030-05"
    await dnc.remove(conn, number, removed_by=admin, reason="customer asked to be called again")
    assert not await dnc.is_listed(conn, number)
    assert not await conn.fetchval("select do_not_call from customers where id = $1", customer)
    with pytest.raises(UserError) as info:
        await dnc.add(conn, "12345", "x", source="agent", added_by=admin)
    assert info.value.status == 422
