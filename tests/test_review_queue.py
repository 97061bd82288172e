"""The review queue: what to review first, and claims that keep two reviewers off the same call."""

from __future__ import annotations

from factories import user
from scored_calls import scored_call
from test_transcript_search import ENGLISH, OTHER

GOOD = [
    ("agent", 0.5, 3.0, "Hello, my name is Carl, calling from Sunrise."),
    ("agent", 3.5, 6.0, "This call is recorded for quality. What matters most to you?"),
    ("customer", 6.5, 9.0, "A low price and quick help."),
    ("agent", 9.5, 12.0, "Thank you, goodbye."),
]


async def _queue(client):
    resp = await client.get("/api/v1/qa/queue")
    assert resp.status == 200, await resp.text()
    return [(i["call_id"], i["reason"]) for i in (await resp.json())["items"]]


async def test_queue_puts_compliance_failures_first_then_unconfirmed_sales_then_a_sample(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        a1, a2, a3 = [await user(c, "agent") for _ in range(3)]
        no_disclosure = await scored_call(c, OTHER, agent_id=a1)
        sale = await scored_call(c, ENGLISH, agent_id=a2, disposition="SALE")
        good = await scored_call(c, GOOD, agent_id=a3, disposition="INTERESTED")
    await login(client, "qa")
    assert await _queue(client) == [
        (no_disclosure, "failed_compliance"), (sale, "sale_unconfirmed"), (good, "sample"),
    ]


async def test_a_claimed_call_leaves_other_reviewers_queues(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        call_id = await scored_call(c, OTHER, agent_id=await user(c, "agent"))
    first = await login(client, "qa", "rev_one")
    headers = {"X-CSRF-Token": first["csrf_token"]}
    assert (await client.post(f"/api/v1/calls/{call_id}/claim", headers=headers)).status == 201
    assert (await client.delete(f"/api/v1/calls/{call_id}/claim", headers=headers)).status == 204
    assert (await client.delete(f"/api/v1/calls/{call_id}/claim", headers=headers)).status == 404
    assert (await client.post(f"/api/v1/calls/{call_id}/claim", headers=headers)).status == 201
    assert (call_id, "failed_compliance") in await _queue(client)  # the holder still sees it
    second = await login(client, "qa", "rev_two")
    assert await _queue(client) == []
    resp = await client.post(f"/api/v1/calls/{call_id}/claim", headers={"X-CSRF-Token": second["csrf_token"]})
    assert resp.status == 409 and (await resp.json())["claimed_by"] == "rev_one"


async def test_a_reviewed_call_leaves_the_queue(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        call_id = await scored_call(c, OTHER, agent_id=await user(c, "agent"))
    me = await login(client, "qa")
    resp = await client.post(
        f"/api/v1/calls/{call_id}/overrides",
        json={"check_id": "recording_disclosure", "passed": True, "comment": "disclosed by the IVR"},
        headers={"X-CSRF-Token": me["csrf_token"]},
    )
    assert resp.status == 201
    assert await _queue(client) == []
