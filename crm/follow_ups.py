"""Follow-ups (callbacks): a due time, an owner agent or anyone, a note, and a status."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from crm import audit
from crm.errors import IllegalTransition, MissingFields, NotFound, UserError
from crm.paging import page_of

STATUSES = ("open", "done", "missed", "cancelled")
OWNERS = ("me", "anyone")
PER_PAGE_MAX = 200
PAGE_MAX = 1_000_000


class NotYourFollowUp(UserError):
    status = 403
    error_id = "not_your_follow_up"


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
    agent_id: int | None = None,
    now: dt.datetime | None = None,
) -> asyncpg.Record:
    """Mark an open follow-up done, missed or cancelled. With agent_id, only one that agent
    owns or that is anyone's (NotYourFollowUp otherwise)."""
    if status not in ("done", "missed", "cancelled"):
        raise UserError("status must be done, missed or cancelled", fields=["status"])
    async with conn.transaction():
        current = await conn.fetchrow(
            "select status, owner_agent_id from follow_ups where id = $1 for update",
            follow_up_id,
        )
        if current is None:
            raise NotFound(f"no follow-up {follow_up_id}")
        if agent_id is not None and current["owner_agent_id"] not in (None, agent_id):
            raise NotYourFollowUp(
                f"follow-up {follow_up_id} belongs to another agent; ask a supervisor"
            )
        if current["status"] != "open":
            raise IllegalTransition(
                f"follow-up {follow_up_id} is already {current['status']}",
                from_state=current["status"],
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


async def mark_missed(conn: asyncpg.Connection, now: dt.datetime, grace_minutes: int) -> int:
    """Open follow-ups whose due time plus grace_minutes has passed at `now` become missed
    (closed at `now`, one audit row each, all in one statement); returns how many.
    Meant to run on a schedule; running it twice changes nothing more."""
    if isinstance(grace_minutes, bool) or not isinstance(grace_minutes, int) or grace_minutes < 0:
        raise UserError("grace_minutes must be a whole number of minutes, 0 or more")
    return await conn.fetchval(
        """with missed as (
               update follow_ups set status = 'missed', closed_at = $1
               where status = 'open' and due_at + make_interval(mins => $2) < $1
               returning id
           ), logged as (
               insert into audit_log (user_id, action, entity, entity_id, details)
               select null, 'follow_up.missed', 'follow_up', id::text,
                      jsonb_build_object('grace_minutes', $2::int)
               from missed
           )
           select count(*) from missed""",
        now,
        grace_minutes,
    )


async def list_follow_ups(
    conn: asyncpg.Connection,
    *,
    user_id: int,
    sees_all: bool,
    status: str | None = None,
    due_before: dt.datetime | None = None,
    mine: bool = False,
    page: int = 1,
    per_page: int = 50,
) -> dict:
    """One page of follow-ups, soonest due first, with the customer's name and the number
    to call. Without sees_all: the user's own and the unowned ("anyone") ones; mine: only
    the user's own."""
    if status is not None and status not in STATUSES:
        raise UserError(f"status must be one of {', '.join(STATUSES)}", fields=["status"])
    if due_before is not None and due_before.tzinfo is None:
        raise UserError("due_before needs a UTC offset (e.g. +08:00 or Z)", fields=["due_before"])
    if not 1 <= page <= PAGE_MAX:
        raise UserError(f"page must be between 1 and {PAGE_MAX}", fields=["page"])
    if not 1 <= per_page <= PER_PAGE_MAX:
        raise UserError(f"per_page must be between 1 and {PER_PAGE_MAX}", fields=["per_page"])
    args: list = []
    where = []

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    if mine:
        where.append(f"f.owner_agent_id = {arg(user_id)}")
    elif not sees_all:
        where.append(f"(f.owner_agent_id = {arg(user_id)} or f.owner_agent_id is null)")
    if status is not None:
        where.append(f"f.status = {arg(status)}")
    if due_before is not None:
        where.append(f"f.due_at < {arg(due_before)}")
    condition = " and ".join(where) or "true"
    count_args = list(args)
    window = f"limit {arg(per_page)} offset {arg((page - 1) * per_page)}"
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(
            f"select count(*) from follow_ups f where {condition}", *count_args
        )
        rows = await conn.fetch(
            f"""select f.*, c.name as customer_name, u.username as owner_username,
                       coalesce(l.phone, (select p.e164 from customer_phones p
                                          where p.customer_id = f.customer_id
                                          order by p.is_primary desc, p.created_at, p.e164
                                          limit 1)) as phone
                from follow_ups f
                join customers c on c.id = f.customer_id
                left join users u on u.id = f.owner_agent_id
                left join leads l on l.id = f.lead_id
                where {condition}
                order by f.due_at, f.id
                {window}""",
            *args,
        )
    return page_of(rows, page, per_page, total)


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
