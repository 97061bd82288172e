"""Agent status: ready, paused (with a reason code), on a call, in wrap-up.

Each stretch in one status is a row of agent_status_log; the open one has
ended_at null. Changing status closes the open row and opens the next at the
same instant, so time in status adds up with no gaps (reports sum it).
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from crm.errors import IllegalTransition, MissingFields, UserError

STATUSES = ("ready", "paused", "on_call", "wrap_up")
# What a person may pick; on_call and wrap_up follow the calls.
CHOSEN = ("ready", "paused")


class UnknownPauseReason(UserError):
    error_id = "unknown_pause_reason"


async def current(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record | None:
    """The open status row, or None when the agent is logged out of the desk."""
    return await conn.fetchrow(
        "select * from agent_status_log where user_id = $1 and ended_at is null", user_id
    )


async def set_status(
    conn: asyncpg.Connection,
    user_id: int,
    status: str,
    *,
    now: dt.datetime,
    reason: str | None = None,
    campaign_id: int | None = None,
    pause_reasons: list[str] | None = None,
) -> asyncpg.Record:
    """Move the agent to `status`; the same status (and reason, campaign) again changes nothing.

    pause_reasons: the reason codes a pause may give (from the settings)."""
    if status not in STATUSES:
        raise UserError(f"status must be one of {', '.join(STATUSES)}", fields=["status"])
    if status == "paused":
        if not reason:
            raise MissingFields("a pause needs a reason code", fields=["reason"], valid_reasons=pause_reasons)
        if pause_reasons is not None and reason not in pause_reasons:
            raise UnknownPauseReason(f"unknown pause reason {reason!r}; valid: {', '.join(pause_reasons)}",
                                     fields=["reason"], valid_reasons=pause_reasons)
    else:
        reason = None
    async with conn.transaction():
        # Serialise status changes of one agent (two tabs clicking at once).
        await conn.execute("select pg_advisory_xact_lock(hashtext('agent_status'), ($1 % 2147483647)::int)",
                           user_id)
        open_row = await current(conn, user_id)
        if open_row is not None:
            if (open_row["status"], open_row["reason"], open_row["campaign_id"]) == (status, reason, campaign_id):
                return open_row
            await conn.execute(
                "update agent_status_log set ended_at = greatest($2, started_at) where id = $1",
                open_row["id"], now,
            )
        return await conn.fetchrow(
            """insert into agent_status_log (user_id, status, reason, campaign_id, started_at)
               values ($1, $2, $3, $4, $5) returning *""",
            user_id, status, reason, campaign_id,
            now if open_row is None else max(now, open_row["started_at"]),
        )


async def end(conn: asyncpg.Connection, user_id: int, *, now: dt.datetime) -> None:
    """Leave the desk (log out): the open stretch ends."""
    row = await current(conn, user_id)
    if row is not None and row["status"] == "on_call":
        raise IllegalTransition("hang up before leaving the desk", from_state="on_call", to_state=None)
    await close_open(conn, user_id, now=now)


async def close_open(conn: asyncpg.Connection, user_id: int, *, now: dt.datetime) -> None:
    """End the open stretch whatever it is (logging out of the service ends the desk too)."""
    await conn.execute(
        "update agent_status_log set ended_at = greatest($2, started_at) where user_id = $1 and ended_at is null",
        user_id, now,
    )
