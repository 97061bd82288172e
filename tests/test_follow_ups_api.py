"""Follow-ups (callbacks) through the real HTTP app: who sees which, closing them, and the
scheduled sweep that marks forgotten ones missed."""

from __future__ import annotations

import datetime as dt

import factories as make
import pytest

from crm import follow_ups
from crm.errors import UserError

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def headers(user: dict, key: str | None = None) -> dict:
    h = {"X-CSRF-Token": user["csrf_token"]}
    if key:
        h["Idempotency-Key"] = key
    return h


async def callback(conn, customer_id, owner, *, hours, **kw) -> int:
    row = await follow_ups.create_follow_up(
        conn,
        customer_id=customer_id,
        due_at=NOW + dt.timedelta(hours=hours),
        owner_agent_id=owner,
        created_by=owner,
        **kw,
    )
    return row["id"]


@pytest.fixture
async def board(client, login, app_ctx):
    """A logged-in agent; follow-ups of theirs, of another agent, and one for anyone."""
    agent = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        other = await make.user(c, "agent")
        number = make.phone()
        customer = await make.customer(c, "Chen Jie", phones=[number])
        ids = {
            "mine": await callback(c, customer, agent["id"], hours=1, note="call after lunch"),
            "anyone": await callback(c, customer, None, hours=2),
            "theirs": await callback(c, customer, other, hours=3),
            "mine_later": await callback(c, customer, agent["id"], hours=48),
        }
    return agent, ids, number


async def listed(client, query: str = "") -> list[int]:
    resp = await client.get(f"/api/v1/follow-ups{query}")
    assert resp.status == 200, await resp.text()
    return [row["id"] for row in (await resp.json())["items"]]


async def test_agent_sees_own_and_unowned_callbacks_soonest_first(client, board):
    _, ids, number = board
    resp = await client.get("/api/v1/follow-ups")
    items = (await resp.json())["items"]
    assert [row["id"] for row in items] == [ids["mine"], ids["anyone"], ids["mine_later"]]
    assert items[0]["customer_name"] == "Chen Jie" and items[0]["phone"] == number
    assert items[0]["note"] == "call after lunch" and items[1]["owner_agent_id"] is None


async def test_mine_true_leaves_out_the_unowned_ones(client, board):
    _, ids, _ = board
    assert await listed(client, "?mine=true") == [ids["mine"], ids["mine_later"]]


async def test_supervisor_sees_every_callback(client, login, board):
    _, ids, _ = board
    await login(client, "supervisor")
    assert set(await listed(client)) == set(ids.values())
    assert await listed(client, "?mine=true") == []


async def test_due_before_and_status_filter_the_list(client, board, app_ctx):
    agent, ids, _ = board
    cutoff = (NOW + dt.timedelta(hours=24)).isoformat()  # "+00:00": must be URL-encoded
    resp = await client.get("/api/v1/follow-ups", params={"due_before": cutoff})
    assert [r["id"] for r in (await resp.json())["items"]] == [ids["mine"], ids["anyone"]]
    # a client that forgot to encode "+" (which a query string reads as a space) still gets
    # what it meant
    assert await listed(client, f"?due_before={cutoff}") == [ids["mine"], ids["anyone"]]

    async with app_ctx.pool.acquire() as c:
        await follow_ups.close(c, ids["mine"], "done", user_id=agent["id"])
    assert await listed(client, "?status=open") == [ids["anyone"], ids["mine_later"]]
    assert await listed(client, "?status=done") == [ids["mine"]]


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("status=late", 422, "status"),
        ("due_before=tomorrow", 400, "due_before"),
        ("due_before=2030-01-01T09:00:00", 400, "due_before"),
        ("mine=perhaps", 400, "mine"),
        ("page=-1", 400, "page"),
    ],
)
async def test_bad_list_filter_is_refused_naming_it(client, login, query, status, field):
    await login(client, "agent")
    resp = await client.get(f"/api/v1/follow-ups?{query}")
    assert (resp.status, (await resp.json())["fields"]) == (status, [field])


async def test_agent_marks_own_callback_done_with_an_audit_row(client, board, app_ctx):
    agent, ids, _ = board
    resp = await client.post(f"/api/v1/follow-ups/{ids['mine']}/done", headers=headers(agent))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "done" and body["closed_at"]
    async with app_ctx.pool.acquire() as c:
        audit = await c.fetchrow("select * from audit_log where action = 'follow_up.done'")
    assert (audit["user_id"], audit["entity_id"]) == (agent["id"], str(ids["mine"]))


async def test_agent_may_take_and_cancel_an_unowned_callback(client, board):
    agent, ids, _ = board
    resp = await client.post(f"/api/v1/follow-ups/{ids['anyone']}/cancel", headers=headers(agent))
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"


async def test_agent_cannot_close_another_agents_callback_but_a_supervisor_can(
    client, login, board, app_ctx
):
    agent, ids, _ = board
    for action in ("done", "cancel"):
        resp = await client.post(
            f"/api/v1/follow-ups/{ids['theirs']}/{action}", headers=headers(agent)
        )
        assert resp.status == 403 and (await resp.json())["error"] == "not_your_follow_up"
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select status from follow_ups where id = $1", ids["theirs"]) == "open"
    sup = await login(client, "supervisor")
    resp = await client.post(f"/api/v1/follow-ups/{ids['theirs']}/cancel", headers=headers(sup))
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"


async def test_closing_a_closed_callback_is_409_and_an_unknown_one_404(client, board):
    agent, ids, _ = board
    url = f"/api/v1/follow-ups/{ids['mine']}"
    assert (await client.post(f"{url}/done", headers=headers(agent))).status == 200
    resp = await client.post(f"{url}/cancel", headers=headers(agent))
    body = await resp.json()
    assert (resp.status, body["error"], body["from_state"]) == (409, "illegal_state_change", "done")
    resp = await client.post("/api/v1/follow-ups/99999/done", headers=headers(agent))
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_done_retried_with_the_same_idempotency_key_replays_the_answer(client, board):
    agent, ids, _ = board
    url = f"/api/v1/follow-ups/{ids['mine']}/done"
    first = await client.post(url, headers=headers(agent, "fu-1"))
    second = await client.post(url, headers=headers(agent, "fu-1"))
    assert (first.status, second.status) == (200, 200)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await first.json() == await second.json()


# --- the scheduled sweep -------------------------------------------------------------


async def test_mark_missed_closes_open_callbacks_past_due_plus_grace(conn):
    agent = await make.user(conn, "agent")
    customer = await make.customer(conn)
    now = dt.datetime(2030, 5, 1, 9, 0, tzinfo=dt.UTC)

    async def due(minutes_ago: int, status: str = "open") -> int:
        return await conn.fetchval(
            """insert into follow_ups (customer_id, owner_agent_id, due_at, status)
               values ($1, $2, $3, $4) returning id""",
            customer,
            agent,
            now - dt.timedelta(minutes=minutes_ago),
            status,
        )

    late = await due(20)
    within_grace = await due(10)
    upcoming = await due(-30)
    done = await due(60, "done")

    assert await follow_ups.mark_missed(conn, now, 15) == 1
    rows = {r["id"]: r for r in await conn.fetch("select * from follow_ups")}
    assert (rows[late]["status"], rows[late]["closed_at"]) == ("missed", now)
    assert [rows[i]["status"] for i in (within_grace, upcoming, done)] == ["open", "open", "done"]
    audit = await conn.fetch("select * from audit_log where action = 'follow_up.missed'")
    assert [(a["entity_id"], a["user_id"]) for a in audit] == [(str(late), None)]

    assert await follow_ups.mark_missed(conn, now, 15) == 0  # running again changes nothing
    assert await follow_ups.mark_missed(conn, now, 0) == 1
    assert (await conn.fetchval("select status from follow_ups where id = $1", within_grace)) == (
        "missed"
    )


async def test_mark_missed_refuses_a_negative_grace(conn):
    with pytest.raises(UserError):
        await follow_ups.mark_missed(conn, NOW, -5)
