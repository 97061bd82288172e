"""The agent desk through the real HTTP app: status, next lead, dial (gated), hang-up, wrap-up."""

from __future__ import annotations

import datetime as dt

import factories as make
import pytest

from crm import dnc

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}  # tests run at any hour
ORDER = {"product": "Water filter", "quantity": 1, "unit_price": "399.00", "delivery_date": "2099-01-10",
         "delivery_address": "1 Nanjing Rd, Shanghai", "payment_method": "cash_on_delivery"}


def h(user: dict) -> dict:
    return {"X-CSRF-Token": user["csrf_token"]}


@pytest.fixture
async def desk(client, login, app_ctx):
    """(agent, campaign_id, lead_id): a logged-in agent, ready, and a campaign with one lead."""
    agent = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, script="Hello {name} of {company}, this is {agent}. {unknown}",
                                          **ALL_DAY)
        customer_id = await make.customer(c, "Zhang Wei", phones=["+8613800138765"])
        await c.execute("update customers set company = 'Acme Trading' where id = $1", customer_id)
        lead_id = await make.lead(c, campaign_id, customer_id, "+8613800138765")
    resp = await client.post("/api/v1/agent/status", json={"status": "ready", "campaign_id": campaign_id},
                             headers=h(agent))
    assert resp.status == 200, await resp.text()
    return agent, campaign_id, lead_id


async def state(client) -> dict:
    resp = await client.get("/api/v1/agent/desk")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post(client, agent, path, body, status=200):
    resp = await client.post(path, json=body, headers=h(agent))
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_an_agent_works_a_lead_from_preview_to_sale(client, desk, app_ctx):
    agent, campaign_id, lead_id = desk
    picked = await post(client, agent, "/api/v1/agent/next-lead", {"campaign_id": campaign_id})
    assert picked["lead"]["lead_id"] == lead_id and picked["lead"]["tier"] == "new"

    s = await state(client)
    assert s["status"]["status"] == "ready" and s["status"]["seconds"] >= 0
    card = s["lead"]
    assert card["customer"]["name"] == "Zhang Wei" and card["phone"] == "+8613800138765"
    assert card["script"] == f"Hello Zhang Wei of Acme Trading, this is {agent['username']}. {{unknown}}"
    assert card["gates"]["allowed"]

    call = await post(client, agent, "/api/v1/agent/dial", {"lead_id": lead_id}, 201)
    s = await state(client)
    assert s["status"]["status"] == "on_call" and s["call"]["id"] == call["call_id"]
    # Wrapping up while the call is up, or going ready before the disposition, is refused.
    await post(client, agent, "/api/v1/agent/wrap-up", {"code": "NA", "call_id": call["call_id"]}, 409)
    await post(client, agent, "/api/v1/agent/hangup", {"call_id": call["call_id"]})
    assert (await state(client))["status"]["status"] == "wrap_up"
    refused = await post(client, agent, "/api/v1/agent/status", {"status": "ready"}, 409)
    assert "disposition" in refused["message"]

    done = await post(client, agent, "/api/v1/agent/wrap-up",
                      {"code": "SALE", "call_id": call["call_id"], "order": ORDER}, 201)
    assert done["order_id"] and done["closed"]
    s = await state(client)
    assert s["status"]["status"] == "ready" and s["lead"] is None and s["call"] is None
    async with app_ctx.pool.acquire() as c:
        lead = await c.fetchrow("select * from leads where id = $1", lead_id)
        log = await c.fetch("select * from agent_status_log order by id")
    assert lead["claimed_by"] is None and lead["status"] == "SALE" and lead["attempts_total"] == 1
    assert [r["status"] for r in log] == ["ready", "on_call", "wrap_up", "ready"]
    # Stretches follow each other with no gap; only the last is open.
    assert all(a["ended_at"] == b["started_at"] for a, b in zip(log, log[1:], strict=False))
    assert log[-1]["ended_at"] is None


async def test_a_dial_the_gates_block_is_refused_with_the_reason_and_writes_no_call(client, desk, app_ctx):
    agent, campaign_id, lead_id = desk
    await post(client, agent, "/api/v1/agent/next-lead", {"campaign_id": campaign_id})
    async with app_ctx.pool.acquire() as c:  # listed while the agent was reading the card
        await dnc.add(c, "+8613800138765", "customer asked on another channel", source="customer_request",
                      added_by=None)

    refused = await post(client, agent, "/api/v1/agent/dial", {"lead_id": lead_id}, 409)
    assert refused["error"] == "dial_blocked"
    assert [r["gate"] for r in refused["reasons"]] == ["do_not_call"]
    assert "do-not-call" in refused["message"]
    async with app_ctx.pool.acquire() as c:
        assert await make.count(c, "calls") == 0
        assert await c.fetchval("select count(*) from audit_log where action = 'dial.blocked'") == 1
    assert (await state(client))["status"]["status"] == "ready"


async def test_a_campaign_that_may_not_call_abroad_refuses_a_foreign_number(client, desk, app_ctx):
    agent, campaign_id, _ = desk
    async with app_ctx.pool.acquire() as c:
        await c.execute("update leads set closed = true")
        foreign = await make.lead(c, campaign_id, number="+14165550100")
    await post(client, agent, "/api/v1/agent/take", {"lead_id": foreign})
    refused = await post(client, agent, "/api/v1/agent/dial", {"lead_id": foreign}, 409)
    assert [r["gate"] for r in refused["reasons"]] == ["destination_not_allowed"]


async def test_pausing_needs_a_known_reason_code(client, desk, app_ctx):
    agent, _, _ = desk
    missing = await post(client, agent, "/api/v1/agent/status", {"status": "paused"}, 422)
    assert missing["error"] == "missing_fields"
    unknown = await post(client, agent, "/api/v1/agent/status", {"status": "paused", "reason": "nap"}, 422)
    assert unknown["error"] == "unknown_pause_reason" and "lunch" in unknown["valid_reasons"]
    await post(client, agent, "/api/v1/agent/status", {"status": "paused", "reason": "lunch"})
    s = await state(client)
    assert (s["status"]["status"], s["status"]["reason"]) == ("paused", "lunch")
    # A paused agent gets no lead from the hopper.
    refused = await post(client, agent, "/api/v1/agent/next-lead", {"campaign_id": s["status"]["campaign_id"]},
                         409)
    assert refused["error"] == "illegal_state_change"


async def test_another_agent_cannot_take_or_dial_my_lead(client, desk, login, app_ctx):
    agent, campaign_id, lead_id = desk
    await post(client, agent, "/api/v1/agent/next-lead", {"campaign_id": campaign_id})
    other = await login(client, "agent")  # the client's cookie is now the other agent's
    await post(client, other, "/api/v1/agent/status", {"status": "ready", "campaign_id": campaign_id})
    assert (await post(client, other, "/api/v1/agent/next-lead", {"campaign_id": campaign_id}))["lead"] is None
    await post(client, other, "/api/v1/agent/take", {"lead_id": lead_id}, 409)
    await post(client, other, "/api/v1/agent/dial", {"lead_id": lead_id}, 409)


async def test_my_callbacks_are_listed_and_can_be_taken(client, desk, app_ctx):
    agent, campaign_id, lead_id = desk
    await post(client, agent, "/api/v1/agent/take", {"lead_id": lead_id})
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    await post(client, agent, "/api/v1/agent/wrap-up",
               {"code": "CALLBACK", "lead_id": lead_id, "follow_up": {"due_at": due}}, 201)
    s = await state(client)
    assert [(c["lead_id"], c["customer_name"], c["due"]) for c in s["callbacks"]] == [(lead_id, "Zhang Wei", False)]
    await post(client, agent, "/api/v1/agent/take", {"lead_id": lead_id})
    assert (await state(client))["lead"]["lead_id"] == lead_id


async def test_bad_requests_get_clear_errors(client, desk):
    agent, _, _ = desk
    assert (await post(client, agent, "/api/v1/agent/next-lead", {"campaign_id": "x"}, 400))["fields"] == [
        "campaign_id"]
    await post(client, agent, "/api/v1/agent/next-lead", {"campaign_id": 999999}, 404)
    await post(client, agent, "/api/v1/agent/dial", {"lead_id": 999999}, 404)
    await post(client, agent, "/api/v1/agent/hangup", {}, 400)
    assert (await post(client, agent, "/api/v1/agent/skip", {"lead_id": 1, "reason": ""}, 422))["fields"] == [
        "reason"]


async def test_logging_out_ends_the_open_status_stretch(client, desk, app_ctx):
    agent, _, _ = desk
    resp = await client.delete("/api/v1/session", headers=h(agent))
    assert resp.status == 200
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select count(*) from agent_status_log where ended_at is null") == 0


async def test_a_manager_changes_a_campaigns_dialing_rules(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c)
    supervisor = await login(client, "supervisor")
    resp = await client.patch(f"/api/v1/campaigns/{campaign_id}", headers=h(supervisor), json={
        "calling_window_start": "10:00", "calling_window_end": "20:30", "max_attempts_per_day": 2,
        "requires_consent": True, "allowed_prefixes": ["+86", "+852"], "callbacks_any_agent": True})
    assert resp.status == 200, await resp.text()
    row = await resp.json()
    assert (row["calling_window_start"], row["calling_window_end"]) == ("10:00:00", "20:30:00")
    assert row["allowed_prefixes"] == ["+86", "+852"] and row["callbacks_any_agent"] and row["requires_consent"]
    bad = await client.patch(f"/api/v1/campaigns/{campaign_id}", headers=h(supervisor),
                             json={"allowed_prefixes": ["852"]})
    assert bad.status == 422 and (await bad.json())["fields"] == ["allowed_prefixes"]
    assert (await client.patch("/api/v1/campaigns/999999", headers=h(supervisor), json={"script": "x"})).status == 404
    agent = await login(client, "agent")
    assert (await client.patch(f"/api/v1/campaigns/{campaign_id}", headers=h(agent), json={})).status == 403


async def test_a_wrap_up_past_the_limit_becomes_a_pause_and_the_disposition_is_still_owed(client, desk, app_ctx):
    from telesales.agent_desk import Desk

    agent, campaign_id, lead_id = desk
    me = {"id": agent["id"], "username": agent["username"]}
    t0 = dt.datetime.now(dt.UTC)
    d = Desk(app_ctx, me)
    await d.take(lead_id, t0)
    call = await d.dial(lead_id, t0)
    await d.hangup(call["call_id"], t0 + dt.timedelta(seconds=40))
    limit = app_ctx.settings.dialer.max_wrap_up_seconds
    s = await d.state(t0 + dt.timedelta(seconds=40 + limit - 1))
    assert s["status"]["status"] == "wrap_up"
    s = await d.state(t0 + dt.timedelta(seconds=40 + limit + 5))
    assert (s["status"]["status"], s["status"]["reason"]) == ("paused", "wrap_up_timeout")
    assert s["status"]["since"] == t0 + dt.timedelta(seconds=40 + limit)
    refused = await post(client, agent, "/api/v1/agent/status", {"status": "ready"}, 409)
    assert "disposition" in refused["message"]
    await post(client, agent, "/api/v1/agent/wrap-up", {"code": "NA", "call_id": call["call_id"]}, 201)
    # A paused agent stays paused after the wrap-up; going ready is theirs to choose.
    assert (await state(client))["status"]["status"] == "paused"
    await post(client, agent, "/api/v1/agent/status", {"status": "ready"})


async def test_an_agent_cannot_wrap_up_a_lead_in_front_of_someone_else(client, desk, login):
    agent, campaign_id, lead_id = desk
    await post(client, agent, "/api/v1/agent/take", {"lead_id": lead_id})
    other = await login(client, "agent")
    refused = await post(client, other, "/api/v1/agent/wrap-up", {"code": "WN", "lead_id": lead_id}, 409)
    assert refused["fields"] == ["lead_id"]
