"""Who may open a call's audio WebSocket, and the session records (issue #7, point 4).

The refusals happen at the handshake, before any audio: an agent, a QA reviewer, an anonymous
client, a bad or missing Origin, and a supervisor of another team. A supervisor who may monitor the
call gets past every check to the seat (409 here: this app runs no seats).
"""

from __future__ import annotations

import datetime as dt
import types

import aiohttp
import pytest

from crm import calls as call_store
from crm import monitoring

AUDIO = "/api/v1/supervisor/calls/{}/audio"


async def _team(conn, name: str) -> int:
    return await conn.fetchval("insert into teams (name) values ($1) returning id", name)


async def _answered_call(conn, agent_id: int):
    row = await call_store.create_call(conn, direction="outbound", agent_id=agent_id, seat="seat1")
    await call_store.mark_call_progress(conn, row["id"], answered_at=dt.datetime.now(dt.UTC))
    return row["id"]


async def _handshake(client, call_id, origin: str | None) -> int:
    headers = {} if origin is None else {"Origin": origin}
    try:
        ws = await client.ws_connect(AUDIO.format(call_id), headers=headers)
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    await ws.close()
    return 101


@pytest.fixture
async def setup(client, app_ctx, login):
    """A call of an agent in team 'north'; the supervisor 'south' looks after team 'south' only."""
    async with app_ctx.pool.acquire() as conn:
        north, south = await _team(conn, "north"), await _team(conn, "south")
        agent = await login(client, "agent", "north_agent")
        agent_id = await conn.fetchval("select id from users where username = 'north_agent'")
        await conn.execute("update users set team_id = $1 where id = $2", north, agent_id)
        call_id = await _answered_call(conn, agent_id)
    await client.post("/logout", headers={"X-CSRF-Token": agent["csrf_token"]})
    return types.SimpleNamespace(call_id=call_id, north=north, south=south, agent_id=agent_id)


@pytest.mark.parametrize("role", ["agent", "qa", None])
async def test_agents_reviewers_and_anonymous_clients_are_refused(client, login, setup, role):
    if role:
        await login(client, role)
    own = str(client.make_url("")).rstrip("/")
    assert await _handshake(client, setup.call_id, own) == (403 if role else 401)


async def test_bad_or_missing_origin_is_refused_even_for_a_supervisor(client, login, setup):
    await login(client, "supervisor")
    assert await _handshake(client, setup.call_id, "http://evil.example") == 403
    assert await _handshake(client, setup.call_id, None) == 403


async def test_supervisor_of_another_team_is_refused_and_of_this_team_reaches_the_seat(client, app_ctx, login, setup):
    await login(client, "supervisor", "south_boss")
    own = str(client.make_url("")).rstrip("/")
    async with app_ctx.pool.acquire() as conn:
        boss = await conn.fetchval("select id from users where username = 'south_boss'")
        await conn.execute("insert into reviewer_teams values ($1, $2)", boss, setup.south)
    assert await _handshake(client, setup.call_id, own) == 403
    page = await client.get(f"/supervisor/calls/{setup.call_id}", allow_redirects=False)
    assert page.status == 403 and (await page.json())["error"] == "not_your_team"
    async with app_ctx.pool.acquire() as conn:
        await conn.execute("insert into reviewer_teams values ($1, $2)", boss, setup.north)
    # Allowed: every check passes; this app has no seats, so the tap cannot open (409, no upgrade).
    assert await _handshake(client, setup.call_id, own) == 409
    page = await client.get(f"/supervisor/calls/{setup.call_id}")
    assert page.status == 200 and "Whisper to agent" in await page.text()


async def test_ended_or_unknown_calls_cannot_be_monitored(client, app_ctx, login, setup):
    await login(client, "admin")
    own = str(client.make_url("")).rstrip("/")
    async with app_ctx.pool.acquire() as conn:
        await call_store.end_call(conn, setup.call_id, hangup_side="customer", hangup_cause="normal_clearing")
    assert await _handshake(client, setup.call_id, own) == 409
    assert await _handshake(client, "00000000-0000-0000-0000-000000000000", own) == 404
    assert await _handshake(client, "not-a-call", own) == 422
    page = await client.get(f"/supervisor/calls/{setup.call_id}")
    assert "This call is not live" in await page.text()


async def test_sessions_are_marked_on_the_call_and_audited_once(client, app_ctx, login, setup):
    admin = await login(client, "admin")
    async with app_ctx.pool.acquire() as conn:
        admin_id = await conn.fetchval("select id from users where role = 'admin'")
        first = await monitoring.start_session(conn, setup.call_id, admin_id, "listen")
        assert (await monitoring.end_session(conn, first["id"], "mode_change"))["end_reason"] == "mode_change"
        assert await monitoring.end_session(conn, first["id"], "left") is None, "a session ends once"
        await monitoring.start_session(conn, setup.call_id, admin_id, "barge")
        with pytest.raises(ValueError):
            await monitoring.start_session(conn, setup.call_id, admin_id, "shout")
        actions = [r["action"] for r in await conn.fetch(
            "select action from audit_log where entity_id = $1 order by id", str(setup.call_id))]
    assert actions == ["monitor_start", "monitor_end", "monitor_start"]
    resp = await client.get(f"/api/v1/supervisor/calls/{setup.call_id}/monitoring")
    sessions = (await resp.json())["sessions"]
    assert [(s["mode"], s["end_reason"]) for s in sessions] == [("listen", "mode_change"), ("barge", None)]
    assert admin["csrf_token"]
    # A service that stopped with a session open ends it at its next start.
    async with app_ctx.pool.acquire() as conn:
        assert await monitoring.close_abandoned(conn) == 1
        assert [s["end_reason"] for s in await monitoring.sessions_of_call(conn, setup.call_id)] == \
            ["mode_change", "service_stopped"]


async def test_the_agent_sees_monitoring_only_when_the_setting_is_on(client, app_ctx, login, setup):
    async with app_ctx.pool.acquire() as conn:
        boss = await conn.fetchval(
            "insert into users (username, role, password_hash) values ('watcher', 'supervisor', 'x') returning id")
        await monitoring.start_session(conn, setup.call_id, boss, "whisper")
        await conn.execute("update users set password_hash = (select password_hash from users "
                           "where username = 'north_agent') where id = $1", boss)
    await client.post("/api/v1/session", json={"username": "north_agent", "password": "correct horse"})
    assert await (await client.get("/api/v1/agent/monitoring")).json() == {"shown": False, "sessions": []}
    app_ctx.settings.monitoring.agent_sees_monitoring = True
    body = await (await client.get("/api/v1/agent/monitoring")).json()
    assert body["shown"] and [(s["supervisor"], s["mode"]) for s in body["sessions"]] == [("watcher", "whisper")]
