"""Dispositions, customer file, complaint transitions and do-not-call through the real HTTP app."""

from __future__ import annotations

import asyncio
import datetime as dt

import factories as make
import pytest


def headers(user: dict, key: str | None = None) -> dict:
    h = {"X-CSRF-Token": user["csrf_token"]}
    if key:
        h["Idempotency-Key"] = key
    return h


@pytest.fixture
async def agent_call(client, login, app_ctx):
    """A logged-in agent with an outbound call on a fresh lead: (agent, lead_id, call_id)."""
    agent = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        lead = await make.lead(c)
        call = await make.call(c, lead, agent["id"])
    return agent, lead, call


async def count(app_ctx, table: str) -> int:
    async with app_ctx.pool.acquire() as c:
        return await make.count(c, table)


async def test_every_logged_in_role_sees_the_codes(client, login):
    await login(client, "qa")
    resp = await client.get("/api/v1/dispositions")
    assert resp.status == 200
    codes = {d["code"]: d for d in await resp.json()}
    assert codes["SALE"]["requires"] == ["order"] and "final" in codes["SALE"]["flags"]


async def test_sale_without_order_is_422_naming_the_missing_fields(client, agent_call, app_ctx):
    agent, _, call = agent_call
    resp = await client.post(
        "/api/v1/dispositions", json={"code": "SALE", "call_id": call}, headers=headers(agent)
    )
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "missing_fields"
    assert "order.unit_price" in body["fields"] and "order.payment_method" in body["fields"]
    assert await count(app_ctx, "call_dispositions") == 0


async def test_unknown_code_is_422_with_the_valid_codes(client, agent_call):
    agent, _, call = agent_call
    resp = await client.post(
        "/api/v1/dispositions", json={"code": "ZZ", "call_id": call}, headers=headers(agent)
    )
    body = await resp.json()
    assert (
        resp.status == 422
        and body["error"] == "unknown_disposition"
        and "NA" in body["valid_codes"]
    )


async def test_callback_is_201_with_the_follow_up_and_next_attempt(client, agent_call):
    agent, _, call = agent_call
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    resp = await client.post(
        "/api/v1/dispositions",
        headers=headers(agent),
        json={"code": "CALLBACK", "call_id": call, "follow_up": {"due_at": due.isoformat()}},
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["follow_up_id"] and dt.datetime.fromisoformat(body["next_attempt_at"]) == due
    assert body["follow_up_owner_id"] == agent["id"]


async def test_second_disposition_of_a_call_is_409(client, agent_call):
    agent, _, call = agent_call
    resp = await client.post(
        "/api/v1/dispositions", json={"code": "NA", "call_id": call}, headers=headers(agent)
    )
    assert resp.status == 201
    resp = await client.post(
        "/api/v1/dispositions", json={"code": "B", "call_id": call}, headers=headers(agent)
    )
    assert resp.status == 409 and (await resp.json())["error"] == "already_dispositioned"


async def test_retry_with_the_same_idempotency_key_replays_the_first_answer(
    client, agent_call, app_ctx
):
    agent, _, call = agent_call
    request = {"code": "NA", "call_id": call, "note": "rang out"}
    first = await client.post("/api/v1/dispositions", json=request, headers=headers(agent, "abc-1"))
    second = await client.post(
        "/api/v1/dispositions", json=request, headers=headers(agent, "abc-1")
    )
    assert (first.status, second.status) == (201, 201)
    assert await first.json() == await second.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await count(app_ctx, "call_dispositions") == 1


async def test_same_idempotency_key_with_a_different_body_is_422(client, agent_call, app_ctx):
    agent, _, call = agent_call
    await client.post(
        "/api/v1/dispositions",
        json={"code": "NA", "call_id": call},
        headers=headers(agent, "abc-2"),
    )
    resp = await client.post(
        "/api/v1/dispositions", json={"code": "B", "call_id": call}, headers=headers(agent, "abc-2")
    )
    assert resp.status == 422 and (await resp.json())["error"] == "idempotency_key_reused"


async def test_retry_while_the_first_request_is_in_flight_is_409(client, agent_call, app_ctx):
    agent, lead, call = agent_call
    request = {"code": "NA", "call_id": call}
    # Hold the lead's row lock so the first request waits inside its transaction.
    blocker = await app_ctx.pool.acquire()
    tx = blocker.transaction()
    await tx.start()
    try:
        await blocker.execute("select 1 from leads where id = $1 for update", lead)
        first = asyncio.create_task(
            client.post("/api/v1/dispositions", json=request, headers=headers(agent, "abc-3"))
        )
        try:

            async def first_is_waiting() -> bool:
                return bool(
                    await app_ctx.pool.fetchval(
                        "select count(*) from pg_locks where locktype = 'advisory' and granted"
                    )
                )

            for _ in range(200):
                if await first_is_waiting():
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the first request never took its idempotency lock")
            resp = await client.post(
                "/api/v1/dispositions", json=request, headers=headers(agent, "abc-3")
            )
            assert resp.status == 409 and (await resp.json())["error"] == "idempotency_in_flight"
        finally:
            await tx.rollback()
            first_resp = await asyncio.wait_for(first, 10)
    finally:
        await app_ctx.pool.release(blocker)
    assert first_resp.status == 201
    again = await client.post("/api/v1/dispositions", json=request, headers=headers(agent, "abc-3"))
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await count(app_ctx, "call_dispositions") == 1


async def test_an_agent_cannot_wrap_up_another_agents_call_but_a_supervisor_can(
    client, login, agent_call
):
    _, _, call = agent_call
    other = await login(client, "agent")
    resp = await client.post(
        "/api/v1/dispositions", json={"code": "NA", "call_id": call}, headers=headers(other)
    )
    assert resp.status == 403 and (await resp.json())["error"] == "not_your_call"
    sup = await login(client, "supervisor")
    resp = await client.post(
        "/api/v1/dispositions", json={"code": "NA", "call_id": call}, headers=headers(sup)
    )
    assert resp.status == 201


async def test_customer_file_after_a_sale(client, agent_call, app_ctx):
    agent, lead, call = agent_call
    resp = await client.post(
        "/api/v1/dispositions",
        headers=headers(agent),
        json={
            "code": "SALE",
            "call_id": call,
            "order": {
                "product": "Kettle",
                "quantity": 1,
                "unit_price": 59.9,
                "delivery_date": (dt.date.today() + dt.timedelta(days=1)).isoformat(),
                "delivery_address": "2 Main St",
                "payment_method": "wechat_pay",
            },
        },
    )
    assert resp.status == 201, await resp.text()
    customer_id = (await resp.json())["customer_id"]
    resp = await client.get(f"/api/v1/customers/{customer_id}")
    assert resp.status == 200
    f = await resp.json()
    assert f["orders"][0]["unit_price"] == "59.90" and f["orders"][0]["total"] == "59.90"
    assert f["calls"][0]["disposition"] == "SALE"
    assert (await client.get("/api/v1/customers/99999")).status == 404


async def test_complaint_transitions_by_supervisor_and_owning_agent(
    client, login, agent_call, app_ctx
):
    agent, _, call = agent_call
    resp = await client.post(
        "/api/v1/dispositions",
        headers=headers(agent),
        json={
            "code": "COMPLAINT",
            "call_id": call,
            "complaint": {"complainant": "Zhao Lei", "content": "rude courier"},
        },
    )
    complaint_id = (await resp.json())["complaint_id"]
    path = f"/api/v1/complaints/{complaint_id}/transitions"

    resp = await client.post(
        path,
        json={"state": "assigned", "department": "logistics", "owner_id": agent["id"]},
        headers=headers(agent),
    )
    assert resp.status == 403 and (await resp.json())["error"] == "not_complaint_owner"

    sup = await login(client, "supervisor")
    resp = await client.post(
        path,
        json={"state": "assigned", "department": "logistics", "owner_id": agent["id"]},
        headers=headers(sup),
    )
    assert resp.status == 200 and (await resp.json())["state"] == "assigned"
    resp = await client.post(path, json={"state": "confirmed_by_customer"}, headers=headers(sup))
    body = await resp.json()
    assert resp.status == 409 and body["from_state"] == "assigned"

    await client.post(
        "/api/v1/session", json={"username": agent["username"], "password": "correct horse"}
    )
    agent = await (await client.get("/api/v1/session")).json()
    for state, extra in (("in_progress", {}), ("resolved", {"resolution": "courier warned"})):
        resp = await client.post(path, json={"state": state, **extra}, headers=headers(agent))
        assert resp.status == 200, await resp.text()
    history = await (await client.get(f"/api/v1/complaints/{complaint_id}")).json()
    assert [e["to_state"] for e in history["events"]] == [
        "new",
        "assigned",
        "in_progress",
        "resolved",
    ]


async def test_do_not_call_add_and_lookup_by_any_number_format(client, login):
    sup = await login(client, "supervisor")
    resp = await client.post(
        "/api/v1/do-not-call",
        json={"number": "139 0013 9000", "reason": "asked by letter"},
        headers=headers(sup),
    )
    assert resp.status == 201
    assert (await resp.json())["entry"]["source"] == "customer_request"
    resp = await client.post(
        "/api/v1/do-not-call",
        json={"number": "+8613900139000", "reason": "again"},
        headers=headers(sup),
    )
    assert resp.status == 200 and (await resp.json())["created"] is False
    resp = await client.get("/api/v1/do-not-call", params={"number": "+86 139-0013-9000"})
    body = await resp.json()
    assert body["listed"] and body["entry"]["reason"] == "asked by letter"
    resp = await client.get("/api/v1/do-not-call", params={"number": "13800138000"})
    assert (await resp.json())["listed"] is False
    resp = await client.post(
        "/api/v1/do-not-call", json={"number": "13900139001"}, headers=headers(sup)
    )
    assert resp.status == 422 and (await resp.json())["fields"] == ["reason"]
