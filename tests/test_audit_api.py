"""Reading the audit log through the real HTTP app (admins only)."""

from __future__ import annotations

import datetime as dt

import pytest

from crm import audit


def headers(user: dict) -> dict:
    return {"X-CSRF-Token": user["csrf_token"]}


@pytest.fixture
async def entries(app_ctx, client, login):
    """An admin logged in, and five audit rows an hour apart (ending an hour ago) by two users."""
    admin = await login(client, "admin")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with app_ctx.pool.acquire() as conn:
        await conn.execute("delete from audit_log")  # the admin's login row
        other = await conn.fetchval(
            "insert into users (username, role, password_hash) values ('clerk', 'agent', 'x') "
            "returning id"
        )
        rows = [
            (admin["id"], "customer.create", "customer", 1),
            (other, "customer.update", "customer", 1),
            (other, "customer.create", "customer", 2),
            (admin["id"], "dnc.add", "do_not_call", "+8613800138000"),
            (other, "customer.update", "customer", 2),
        ]
        for i, (user_id, action, entity, entity_id) in enumerate(rows):
            await audit.record(conn, user_id, action, entity, entity_id, {"n": i})
            await conn.execute(
                "update audit_log set at = $1 where id = (select max(id) from audit_log)",
                now - dt.timedelta(hours=len(rows) - i),
            )
    return admin, other, now


async def read(client, **params):
    resp = await client.get("/api/v1/audit", params=params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_admin_reads_the_log_newest_first_with_usernames(client, entries):
    admin, _, _ = entries
    body = await read(client)
    assert body["total"] == 5
    assert [r["details"]["n"] for r in body["items"]] == [4, 3, 2, 1, 0]
    assert body["items"][1]["username"] == admin["username"]
    assert body["items"][0]["username"] == "clerk"


async def test_the_log_filters_by_entity_user_and_action(client, entries):
    _, other, _ = entries
    one = await read(client, entity="customer", entity_id="2")
    assert [r["details"]["n"] for r in one["items"]] == [4, 2]
    by_user = await read(client, user_id=str(other), action="customer.update")
    assert [r["details"]["n"] for r in by_user["items"]] == [4, 1]


async def test_since_is_inclusive_and_until_exclusive(client, entries):
    _, _, now = entries
    window = await read(
        client,
        since=(now - dt.timedelta(hours=4)).isoformat(),
        until=(now - dt.timedelta(hours=2)).isoformat(),
    )
    assert [r["details"]["n"] for r in window["items"]] == [2, 1]


async def test_the_log_pages_without_skipping_or_repeating(client, entries):
    pages = [await read(client, page=str(p), per_page="2") for p in (1, 2, 3)]
    assert [[r["details"]["n"] for r in p["items"]] for p in pages] == [[4, 3], [2, 1], [0]]
    assert all(p["total"] == 5 for p in pages)


@pytest.mark.parametrize(
    "params, status, field",
    [
        ({"since": "yesterday"}, 422, "since"),
        ({"until": "2025-01-01T00:00:00"}, 422, "until"),
        ({"user_id": "bob"}, 422, "user_id"),
        ({"entity_type": "customer"}, 400, "entity_type"),
        ({"page": "-1"}, 400, "page"),
    ],
)
async def test_a_bad_filter_is_4xx_naming_it(client, entries, params, status, field):
    resp = await client.get("/api/v1/audit", params=params)
    body = await resp.json()
    assert resp.status == status and field in body["fields"]


async def test_since_after_until_is_422(client, entries):
    resp = await client.get(
        "/api/v1/audit", params={"since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}
    )
    assert resp.status == 422 and (await resp.json())["fields"] == ["since", "until"]


async def test_creating_a_customer_shows_up_in_the_log(client, login):
    agent = await login(client, "agent")
    resp = await client.post(
        "/api/v1/customers", headers=headers(agent), json={"name": "Audited"}
    )
    customer_id = (await resp.json())["id"]
    await login(client, "admin")
    body = await read(client, entity="customer", entity_id=str(customer_id))
    [row] = body["items"]
    assert row["action"] == "customer.create" and row["user_id"] == agent["id"]


@pytest.mark.parametrize("role", ["agent", "qa", "supervisor"])
async def test_only_admins_may_read_the_log(client, login, role):
    await login(client, role)
    resp = await client.get("/api/v1/audit")
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
