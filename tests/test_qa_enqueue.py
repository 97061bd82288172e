"""A call is queued for QA once it has both a closed recording and a wrap-up, whichever comes second.

The recording side goes through the seat service's event handling (telesales/seats.py), the
wrap-up side through the real dispositions API, both against the real database.
"""

from __future__ import annotations

import factories as make
import pytest

from crm import calls as call_store
from telephony import events as ev
from telephony.manager import SeatManager
from telesales.seats import SeatService

SHA = "ab" * 32


@pytest.fixture
async def seats(app_ctx, tmp_path):
    """The service side of telephony with no seat processes: events are applied by hand."""
    return SeatService(SeatManager([]), app_ctx.pool, tmp_path, qa_scorecard=app_ctx.settings.qa.scorecard)


@pytest.fixture
async def agent_call(client, login, app_ctx):
    """A logged-in agent and an outbound call on a lead whose campaign names no scorecard."""
    agent = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        lead = await make.lead(c)
        call = await make.call(c, lead, agent["id"])
        await call_store.set_recording(c, call, state="recording", path=f"recordings/{call}.wav")
    return agent, call


async def _recording_closed(seats, call_id, state="complete"):
    await seats.apply(ev.RecordingClosed(seat="seat1", call_id=call_id, path=f"/x/{call_id}.wav", state=state,
                                         sha256=SHA, duration_seconds=12.0, lost_frames=0))


async def _wrap_up(client, agent, call_id, key=None):
    headers = {"X-CSRF-Token": agent["csrf_token"]} | ({"Idempotency-Key": key} if key else {})
    return await client.post("/api/v1/dispositions", json={"code": "NI", "call_id": call_id}, headers=headers)


async def _jobs(app_ctx):
    async with app_ctx.pool.acquire() as c:
        return [dict(r) for r in await c.fetch("select * from qa_jobs order by id")]


async def test_recording_closed_then_wrap_up_queues_one_job(client, app_ctx, seats, agent_call):
    agent, call_id = agent_call
    await _recording_closed(seats, call_id)
    assert await _jobs(app_ctx) == []  # no disposition yet
    assert (await _wrap_up(client, agent, call_id)).status == 201
    jobs = await _jobs(app_ctx)
    assert [(str(j["call_id"]), j["scorecard"], j["state"]) for j in jobs] == [(call_id, "sales", "queued")]
    assert jobs[0]["recording_path"] == f"recordings/{call_id}.wav" and jobs[0]["recording_sha256"] == SHA


async def test_wrap_up_then_recording_closed_queues_one_job(client, app_ctx, seats, agent_call):
    agent, call_id = agent_call
    assert (await _wrap_up(client, agent, call_id)).status == 201
    assert await _jobs(app_ctx) == []  # recording still open
    await _recording_closed(seats, call_id)
    assert [str(j["call_id"]) for j in await _jobs(app_ctx)] == [call_id]


async def test_a_repeated_wrap_up_still_leaves_one_job(client, app_ctx, seats, agent_call):
    agent, call_id = agent_call
    await _recording_closed(seats, call_id)
    assert (await _wrap_up(client, agent, call_id, key="k1")).status == 201
    assert (await _wrap_up(client, agent, call_id, key="k1")).status == 201  # idempotent retry: first answer
    assert (await _wrap_up(client, agent, call_id)).status == 409  # a second wrap-up is refused
    await _recording_closed(seats, call_id)  # a repeated event changes nothing either
    assert len(await _jobs(app_ctx)) == 1


async def test_a_recording_repaired_after_a_crash_is_queued_too(client, app_ctx, seats, agent_call):
    agent, call_id = agent_call
    assert (await _wrap_up(client, agent, call_id)).status == 201
    await _recording_closed(seats, call_id, state="repaired")
    assert len(await _jobs(app_ctx)) == 1


async def test_a_recording_lost_to_storage_is_not_queued(client, app_ctx, seats, agent_call):
    agent, call_id = agent_call
    await _recording_closed(seats, call_id, state="failed_storage")
    assert (await _wrap_up(client, agent, call_id)).status == 201
    assert await _jobs(app_ctx) == []


async def test_the_campaign_scorecard_is_used_when_it_names_one(client, login, app_ctx, seats):
    agent = await login(client, "agent")
    async with app_ctx.pool.acquire() as c:
        campaign = await make.campaign(c, kind="inbound_service", scorecard="service")
        call_id = await make.call(c, await make.lead(c, campaign), agent["id"])
        await call_store.set_recording(c, call_id, state="recording", path=f"recordings/{call_id}.wav")
    await _recording_closed(seats, call_id)
    assert (await _wrap_up(client, agent, call_id)).status == 201
    assert [j["scorecard"] for j in await _jobs(app_ctx)] == ["service"]
