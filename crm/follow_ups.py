"""Follow-ups (callbacks): a due time, an owner agent or anyone, a note, and a status."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from crm import audit
from crm.errors import IllegalTransition, MissingFields, NotFound, UserError

STATUSES = ("open", "done", "missed", "cancelled")
OWNERS = ("me", "anyone")


def parse_due_at(value, *, now: dt.datetime, field: str = "due_at") -> dt.datetime:
    """An ISO 8601 time with a UTC offset, later than now."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MissingFields(f"{field} is required", fields=[field])
    if isinstance(value, dt.datetime):
        due = value
    else:
        try:
            due = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise UserError(
                f"{field} must be a time like 2025-03-31T15:00:00+08:00", fields=[field]
            ) from None
    if due.tzinfo is None:
        raise UserError(
            f"{field} needs a UTC offset (e.g. +08:00 or Z): whose 15:00 is it?", fields=[field]
        )
    if due <= now:
        raise UserError(f"{field} must be in the future", fields=[field])
    return due


async def create_follow_up(
    conn: asyncpg.Connection,
    *,
    customer_id: int,
    due_at: dt.datetime,
    owner_agent_id: int | None,
    created_by: int | None,
    lead_id: int | None = None,
    call_id: uuid.UUID | None = None,
    note: str = "",
    now: dt.datetime | None = None,
) -> asyncpg.Record:
    return await conn.fetchrow(
        """insert into follow_ups (customer_id, lead_id, call_id, owner_agent_id, due_at, note,
               created_by, created_at)
           values ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now())) returning *""",
        customer_id,
        lead_id,
        call_id,
        owner_agent_id,
        due_at,
        note,
        created_by,
        now,
    )


async def settle_for_lead(conn: asyncpg.Connection, lead_id: int, *, now: dt.datetime) -> int:
    """Close the lead's open follow-ups because a newer wrap-up replaces them: those already
    due were worked by this call (done), later ones are no longer wanted (cancelled)."""
    result = await conn.execute(
        """update follow_ups
           set status = case when due_at <= $2 then 'done' else 'cancelled' end, closed_at = $2
           where lead_id = $1 and status = 'open'""",
        lead_id,
        now,
    )
    return int(result.split()[-1])


async def close(
    conn: asyncpg.Connection,
    follow_up_id: int,
    status: str,
    *,
    user_id: int | None,
    now: dt.datetime | None = None,
) -> asyncpg.Record:
    """Mark an open follow-up done, missed or cancelled."""
    if status not in ("done", "missed", "cancelled"):
        raise UserError("status must be done, missed or cancelled", fields=["status"])
    async with conn.transaction():
        current = await conn.fetchval(
            "select status from follow_ups where id = $1 for update", follow_up_id
        )
        if current is None:
            raise NotFound(f"no follow-up {follow_up_id}")
        if current != "open":
            raise IllegalTransition(
                f"follow-up {follow_up_id} is already {current}",
                from_state=current,
                to_state=status,
            )
        row = await conn.fetchrow(
            """update follow_ups set status = $2, closed_at = coalesce($3, now())
               where id = $1 returning *""",
            follow_up_id,
            status,
            now,
        )
        await audit.record(conn, user_id, f"follow_up.{status}", "follow_up", follow_up_id)
        return row


async def mark_missed(conn: asyncpg.Connection, *, older_than: dt.datetime) -> int:
    """Open follow-ups due before `older_than` become missed; returns how many."""
    result = await conn.execute(
        """update follow_ups set status = 'missed', closed_at = now()
           where status = 'open' and due_at < $1""",
        older_than,
    )
    return int(result.split()[-1])


async def due_for_agent(
    conn: asyncpg.Connection, agent_id: int, *, until: dt.datetime
) -> list[asyncpg.Record]:
    """Open follow-ups due by `until` that this agent owns or anyone may take, soonest first."""
    return await conn.fetch(
        """select f.*, c.name as customer_name
           from follow_ups f join customers c on c.id = f.customer_id
           where f.status = 'open' and f.due_at <= $2
             and (f.owner_agent_id = $1 or f.owner_agent_id is null)
           order by f.due_at, f.id""",
        agent_id,
        until,
    )
