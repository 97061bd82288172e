"""The customer's communication record: calls, notes, emails, surveys, orders, complaints."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from crm.errors import UserError

KINDS = ("call", "note", "email", "sms", "survey", "order", "complaint")


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
