"""The customer's communication record: calls, notes, emails, surveys, orders, complaints."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from crm.errors import MissingFields, NotFound, UserError
from crm.fields import InvalidValue, check_details, check_text, check_unknown, parse_call_id, parse_time
from crm.paging import page_of

KINDS = ("call", "note", "email", "sms", "survey", "order", "complaint")
# What a person records by hand; the others are written by their own flows
# (a call by the dialer, a survey by crm/surveys.py, an order by a wrap-up...).
MANUAL_KINDS = ("note", "email", "sms")

# Clocks of browsers and servers disagree by a little; a record from the future is a mistake.
CLOCK_SKEW = dt.timedelta(minutes=5)

SUMMARY_MAX = 2000
MANUAL_FIELDS = ("kind", "summary", "details", "occurred_at", "call_id")


async def check_call_of_customer(
    conn: asyncpg.Connection, call_id: uuid.UUID, customer_id: int, field: str = "call_id"
) -> asyncpg.Record:
    """The call, which must be one of this customer's calls."""
    call = await conn.fetchrow("select id, customer_id, campaign_id from calls where id = $1", call_id)
    if call is None:
        raise InvalidValue(f"{field}: no call {call_id}", fields=[field])
    if call["customer_id"] != customer_id:
        raise InvalidValue(f"{field}: call {call_id} is not a call of customer {customer_id}", fields=[field])
    return call


async def lock_customer(conn: asyncpg.Connection, customer_id: int) -> None:
    """404 for an unknown customer; otherwise hold the row (key share) until commit."""
    found = await conn.fetchval("select 1 from customers where id = $1 for key share", customer_id)
    if found is None:
        raise NotFound(f"no customer {customer_id}", fields=["customer_id"])


async def add(
    conn: asyncpg.Connection,
    customer_id: int,
    kind: str,
    *,
    user_id: int | None = None,
    call_id: uuid.UUID | str | None = None,
    summary: str = "",
    details: dict | None = None,
    occurred_at: dt.datetime | None = None,
) -> int:
    if kind not in KINDS:
        raise UserError(f"interaction kind must be one of {', '.join(KINDS)}", fields=["kind"])
    return await conn.fetchval(
        """insert into interactions (customer_id, kind, occurred_at, user_id, call_id, summary,
               details)
           values ($1, $2, coalesce($3, now()), $4, $5, $6, $7) returning id""",
        customer_id,
        kind,
        occurred_at,
        user_id,
        None if call_id is None else uuid.UUID(str(call_id)),
        summary,
        details or {},
    )


async def record_manual(
    conn: asyncpg.Connection,
    customer_id: int,
    body: dict,
    *,
    user_id: int | None,
    now: dt.datetime | None = None,
) -> dict:
    """A note, email or sms a person records: {kind, summary, details?, occurred_at?, call_id?}.
    Checked, written, and answered as the stored entry."""
    check_unknown(body, MANUAL_FIELDS, what="interaction")
    kind = body.get("kind")
    if kind is None or kind == "":
        raise MissingFields("kind is required", fields=["kind"], valid_kinds=list(MANUAL_KINDS))
    if kind not in MANUAL_KINDS:
        raise InvalidValue(
            f"kind must be one of {', '.join(MANUAL_KINDS)}",
            fields=["kind"],
            valid_kinds=list(MANUAL_KINDS),
        )
    summary = check_text(body.get("summary"), "summary", max_len=SUMMARY_MAX, required=True)
    details = check_details(body.get("details"))
    now = now or dt.datetime.now(dt.UTC)
    occurred_at = parse_time(body.get("occurred_at"), "occurred_at") or now
    if occurred_at > now + CLOCK_SKEW:
        raise InvalidValue("occurred_at must not be in the future", fields=["occurred_at"])
    call_id = parse_call_id(body.get("call_id"))
    async with conn.transaction():
        await lock_customer(conn, customer_id)
        if call_id is not None:
            await check_call_of_customer(conn, call_id, customer_id)
        interaction_id = await add(
            conn,
            customer_id,
            kind,
            user_id=user_id,
            call_id=call_id,
            summary=summary,
            details=details,
            occurred_at=occurred_at,
        )
        row = await conn.fetchrow(
            """select i.*, u.username from interactions i left join users u on u.id = i.user_id
               where i.id = $1""",
            interaction_id,
        )
        return dict(row.items())


async def for_customer(
    conn: asyncpg.Connection, customer_id: int, *, limit: int | None = None
) -> list[asyncpg.Record]:
    """The record in time order, oldest first; with limit, the latest `limit` entries."""
    rows = await conn.fetch(
        """select i.*, u.username
           from interactions i left join users u on u.id = i.user_id
           where i.customer_id = $1
           order by i.occurred_at desc, i.id desc
           limit $2""",
        customer_id,
        limit,
    )
    return list(reversed(rows))


async def page_for_customer(
    conn: asyncpg.Connection,
    customer_id: int,
    *,
    page: int,
    per_page: int,
    newest_first: bool = False,
) -> dict:
    """One page of the record in time order (oldest first unless newest_first); 404 for an
    unknown customer. (occurred_at, id) is a total order, so pages neither skip nor repeat;
    one snapshot, so the total agrees with the page."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if await conn.fetchval("select 1 from customers where id = $1", customer_id) is None:
            raise NotFound(f"no customer {customer_id}", fields=["customer_id"])
        total = await conn.fetchval(
            "select count(*) from interactions where customer_id = $1", customer_id
        )
        direction = "desc" if newest_first else "asc"
        rows = await conn.fetch(
            f"""select i.*, u.username
                from interactions i left join users u on u.id = i.user_id
                where i.customer_id = $1
                order by i.occurred_at {direction}, i.id {direction}
                limit $2 offset $3""",
            customer_id,
            per_page,
            (page - 1) * per_page,
        )
    return page_of(rows, page, per_page, total)
