"""Orders through the real HTTP app: a customer's orders, and delivering or cancelling one."""

from __future__ import annotations

import datetime as dt

import factories as make
import pytest

from crm import orders

NOW = dt.datetime.now(dt.UTC)


def headers(user: dict, key: str | None = None) -> dict:
    h = {"X-CSRF-Token": user["csrf_token"]}
    if key:
        h["Idempotency-Key"] = key
    return h


async def take_order(conn, customer_id, product="Kettle", *, agent_id=None, minutes_ago=0) -> int:
    clean = orders.validate_order(
        {
            "product": product,
            "quantity": 2,
            "unit_price": "59.90",
            "delivery_date": (NOW + dt.timedelta(days=2)).date().isoformat(),
            "delivery_address": "2 Main St, Hangzhou",
            "payment_method": "wechat_pay",
        },
        payment_methods=make.RULES["payment_methods"],
        default_currency="CNY",
        now=NOW,
    )
    row = await orders.create_order(
        conn,
        clean,
        customer_id=customer_id,
        lead_id=None,
        call_id=None,
        agent_id=agent_id,
        now=NOW - dt.timedelta(minutes=minutes_ago),
    )
    return row["id"]


@pytest.fixture
async def order(app_ctx):
    """(customer_id, order_id) of a confirmed order."""
    async with app_ctx.pool.acquire() as c:
        customer = await make.customer(c, "Zhou Min")
        return customer, await take_order(c, customer)


async def status_change(client, user, order_id, key=None, **body):
    return await client.post(
        f"/api/v1/orders/{order_id}/status", json=body, headers=headers(user, key)
    )


async def test_agent_lists_a_customers_orders_newest_first_with_exact_money(
    client, login, app_ctx
):
    agent = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        customer = await make.customer(c)
        older = await take_order(c, customer, "Kettle", agent_id=agent["id"], minutes_ago=60)
        newer = await take_order(c, customer, "Toaster")
        await take_order(c, await make.customer(c), "Not theirs")
    resp = await client.get(f"/api/v1/customers/{customer}/orders")
    assert resp.status == 200
    body = await resp.json()
    assert [o["id"] for o in body["items"]] == [newer, older]
    kettle = body["items"][1]
    assert (kettle["product"], kettle["quantity"], kettle["unit_price"], kettle["total"]) == (
        "Kettle",
        "2.000",
        "59.90",
        "119.80",
    )
    assert kettle["agent_username"] == agent["username"] and kettle["status"] == "confirmed"


async def test_orders_of_an_unknown_customer_is_404(client, login):
    await login(client, "agent")
    resp = await client.get("/api/v1/customers/99999/orders")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_supervisor_marks_an_order_delivered_with_audit_and_customer_record(
    client, login, order, app_ctx
):
    customer, order_id = order
    sup = await login(client, "supervisor")
    resp = await status_change(client, sup, order_id, status="delivered")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "delivered"
    async with app_ctx.pool.acquire() as c:
        audit = await c.fetchrow("select * from audit_log where action = 'order.status'")
        entry = await c.fetchrow(
            "select * from interactions where customer_id = $1 order by id desc limit 1", customer
        )
    assert (audit["user_id"], audit["entity_id"], audit["details"]) == (
        sup["id"],
        str(order_id),
        {"from": "confirmed", "to": "delivered"},
    )
    assert (entry["kind"], entry["user_id"], entry["details"]["order_id"]) == (
        "order",
        sup["id"],
        order_id,
    )
    assert "delivered" in entry["summary"]


async def test_cancelling_needs_a_reason_which_the_customer_record_keeps(
    client, login, order, app_ctx
):
    customer, order_id = order
    admin = await login(client, "admin")
    resp = await status_change(client, admin, order_id, status="cancelled")
    body = await resp.json()
    assert (resp.status, body["error"], body["fields"]) == (422, "missing_fields", ["reason"])
    resp = await status_change(client, admin, order_id, status="cancelled", reason="  ")
    assert resp.status == 422

    resp = await status_change(
        client, admin, order_id, status="cancelled", reason="customer found it cheaper"
    )
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    async with app_ctx.pool.acquire() as c:
        entry = await c.fetchrow(
            "select * from interactions where customer_id = $1 order by id desc limit 1", customer
        )
        audit = await c.fetchrow("select details from audit_log where action = 'order.status'")
    assert entry["details"]["reason"] == "customer found it cheaper"
    assert "customer found it cheaper" in entry["summary"]
    assert audit["details"]["reason"] == "customer found it cheaper"


@pytest.mark.parametrize(
    ("first", "then"),
    [("delivered", "cancelled"), ("cancelled", "delivered"), ("delivered", "confirmed")],
)
async def test_changing_a_final_order_is_409_and_changes_nothing(
    client, login, order, app_ctx, first, then
):
    _, order_id = order
    sup = await login(client, "supervisor")
    assert (await status_change(client, sup, order_id, status=first, reason="r")).status == 200
    resp = await status_change(client, sup, order_id, status=then, reason="r")
    body = await resp.json()
    assert (resp.status, body["error"], body["from_state"], body["to_state"]) == (
        409,
        "illegal_state_change",
        first,
        then,
    )
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select status from orders where id = $1", order_id) == first
        assert await c.fetchval("select count(*) from audit_log where action = 'order.status'") == 1


async def test_confirmed_to_confirmed_is_409(client, login, order):
    _, order_id = order
    sup = await login(client, "supervisor")
    resp = await status_change(client, sup, order_id, status="confirmed")
    assert resp.status == 409 and (await resp.json())["allowed"] == ["cancelled", "delivered"]


@pytest.mark.parametrize(
    ("body", "status", "error", "fields"),
    [
        ({}, 422, "missing_fields", ["status"]),
        ({"status": "shipped"}, 422, "invalid_request", ["status"]),
        ({"status": "cancelled", "reason": 5}, 422, "invalid_request", ["reason"]),
        ({"status": "cancelled", "reason": "a\x00b"}, 422, "invalid_request", ["reason"]),
        ({"status": "delivered", "when": "now"}, 422, "invalid_request", ["when"]),
    ],
)
async def test_bad_status_change_is_refused_naming_the_field(
    client, login, order, app_ctx, body, status, error, fields
):
    _, order_id = order
    sup = await login(client, "supervisor")
    resp = await status_change(client, sup, order_id, **body)
    answer = await resp.json()
    assert (resp.status, answer["error"], answer["fields"]) == (status, error, fields)
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select status from orders where id = $1", order_id) == "confirmed"


async def test_status_of_an_unknown_order_is_404(client, login):
    sup = await login(client, "supervisor")
    resp = await status_change(client, sup, 99999, status="delivered")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_agents_cannot_change_an_orders_status(client, login, order):
    _, order_id = order
    agent = await login(client, "agent")
    resp = await status_change(client, agent, order_id, status="delivered")
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"


async def test_status_change_retried_with_the_same_key_is_applied_once(
    client, login, order, app_ctx
):
    _, order_id = order
    sup = await login(client, "supervisor")
    first = await status_change(client, sup, order_id, "o-1", status="delivered")
    second = await status_change(client, sup, order_id, "o-1", status="delivered")
    assert (first.status, second.status) == (200, 200)
    assert second.headers["Idempotent-Replayed"] == "true"
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select count(*) from interactions where kind = 'order'") == 2
