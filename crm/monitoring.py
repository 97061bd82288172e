"""Supervisor monitoring of live calls: who may monitor which call, and the session records.

A session is one stretch of one mode (listen, whisper, barge) by one supervisor on one call. Its start
and end each write a row of `call_monitoring` (marked on the call) and of the audit log, in one
transaction, so the two never disagree.
"""

from __future__ import annotations

import uuid

import asyncpg

from crm import audit
from crm.errors import Conflict, NotFound, UserError
from crm.floor import supervised_teams

MODES = ("listen", "whisper", "barge")
END_REASONS = ("left", "mode_change", "call_ended", "service_stopped")


class NotYourTeam(UserError):
    status = 403
    error_id = "not_your_team"


class CallNotLive(Conflict):
    error_id = "call_not_live"


async def monitorable_call(conn: asyncpg.Connection, user: dict, call_id: uuid.UUID) -> asyncpg.Record:
    """The call with its agent and team if `user` may monitor it: 404 none, 403 not their team.

    Only supervisors and admins (the route says so too), and only the teams crm.floor.supervised_teams
    gives them: the one rule for the wallboard, listening and the live transcript.
    """
    if user["role"] not in ("supervisor", "admin"):
        raise NotYourTeam("only supervisors and admins may monitor calls")
    row = await conn.fetchrow(
        """select c.id, c.seat, c.direction, c.agent_id, c.customer_id, c.campaign_id, c.to_number, c.from_number,
                  c.created_at, c.answered_at, c.ended_at,
                  ag.username as agent, ag.display_name as agent_name, ag.team_id, t.name as team,
                  cu.name as customer, cp.name as campaign
           from calls c
           left join users ag on ag.id = c.agent_id
           left join teams t on t.id = ag.team_id
           left join customers cu on cu.id = c.customer_id
           left join campaigns cp on cp.id = c.campaign_id
           where c.id = $1""",
        call_id,
    )
    if row is None:
        raise NotFound(f"no call {call_id}")
    teams = await supervised_teams(conn, user)
    if teams is not None and row["team_id"] not in teams:
        raise NotYourTeam("this call's agent is not in a team you supervise")
    return row


def require_live(call: asyncpg.Record) -> None:
    if call["ended_at"] is not None:
        raise CallNotLive(f"call {call['id']} has ended")
    if call["answered_at"] is None or not call["seat"]:
        raise CallNotLive(f"call {call['id']} is not connected through a seat yet")


async def start_session(conn: asyncpg.Connection, call_id: uuid.UUID, supervisor_id: int, mode: str) -> asyncpg.Record:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    async with conn.transaction():
        row = await conn.fetchrow(
            """insert into call_monitoring (call_id, supervisor_id, mode) values ($1, $2, $3)
               returning id, call_id, supervisor_id, mode, started_at""",
            call_id, supervisor_id, mode,
        )
        await audit.record(conn, supervisor_id, "monitor_start", "call", call_id,
                           {"session_id": row["id"], "mode": mode, "started_at": row["started_at"].isoformat()})
    return row


async def end_session(conn: asyncpg.Connection, session_id: int, reason: str) -> asyncpg.Record | None:
    """Close an open session (once: a second call changes nothing and returns None)."""
    if reason not in END_REASONS:
        raise ValueError(f"reason must be one of {', '.join(END_REASONS)}, got {reason!r}")
    async with conn.transaction():
        row = await conn.fetchrow(
            """update call_monitoring set ended_at = now(), end_reason = $2
               where id = $1 and ended_at is null
               returning id, call_id, supervisor_id, mode, started_at, ended_at, end_reason""",
            session_id, reason,
        )
        if row is not None:
            await audit.record(conn, row["supervisor_id"], "monitor_end", "call", row["call_id"], {
                "session_id": row["id"], "mode": row["mode"], "started_at": row["started_at"].isoformat(),
                "ended_at": row["ended_at"].isoformat(), "reason": reason,
            })
    return row


async def close_abandoned(conn: asyncpg.Connection) -> int:
    """At service start: sessions left open by a stopped service end now (reason service_stopped)."""
    ids = await conn.fetch("select id from call_monitoring where ended_at is null")
    for r in ids:
        await end_session(conn, r["id"], "service_stopped")
    return len(ids)


async def sessions_of_call(conn: asyncpg.Connection, call_id: uuid.UUID) -> list[dict]:
    rows = await conn.fetch(
        """select m.id, m.mode, m.started_at, m.ended_at, m.end_reason, m.supervisor_id, u.username as supervisor
           from call_monitoring m join users u on u.id = m.supervisor_id
           where m.call_id = $1 order by m.started_at, m.id""",
        call_id,
    )
    return [dict(r.items()) for r in rows]


async def open_sessions_for_agent(conn: asyncpg.Connection, agent_id: int) -> list[dict]:
    """Who monitors the agent's live calls now (for the agent desk, when the setting shows it)."""
    rows = await conn.fetch(
        """select m.call_id, m.mode, m.started_at, coalesce(nullif(u.display_name, ''), u.username) as supervisor
           from call_monitoring m
           join calls c on c.id = m.call_id
           join users u on u.id = m.supervisor_id
           where c.agent_id = $1 and m.ended_at is null and c.ended_at is null
           order by m.started_at""",
        agent_id,
    )
    return [dict(r.items()) for r in rows]
