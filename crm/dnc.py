"""The do-not-call list: numbers that must never be dialled, with why, who and when."""

from __future__ import annotations

import datetime as dt

import asyncpg

from crm import audit
from crm.errors import MissingFields, NotFound, UserError

SOURCES = ("customer_request", "agent", "regulator", "import", "complaint")


async def add(
    conn: asyncpg.Connection,
    e164: str,
    reason: str,
    *,
    source: str,
    added_by: int | None,
    customer_id: int | None = None,
    now: dt.datetime | None = None,
) -> tuple[asyncpg.Record, bool]:
    """List a number (E.164) and flag its customer (the number's owner, and customer_id
    when given: a lead's number need not be among its customer's phones); returns
    (entry, created).

    A number already listed keeps its first entry: the earliest reason and
    date are what a regulator asks about.
    """
    if source not in SOURCES:
        raise UserError(f"source must be one of {', '.join(SOURCES)}", fields=["source"])
    reason = (reason or "").strip()
    if not reason:
        raise MissingFields("a do-not-call entry needs a reason", fields=["reason"])
    async with conn.transaction():
        try:
            row = await conn.fetchrow(
                """insert into do_not_call (e164, reason, source, added_by, added_at)
                   values ($1, $2, $3, $4, coalesce($5, now()))
                   on conflict (e164) do nothing returning *""",
                e164,
                reason,
                source,
                added_by,
                now,
            )
        except asyncpg.CheckViolationError:
            raise UserError(f"{e164!r} is not an E.164 number", fields=["number"]) from None
        created = row is not None
        if not created:
            row = await conn.fetchrow("select * from do_not_call where e164 = $1", e164)
        await conn.execute(
            """update customers set do_not_call = true, updated_at = coalesce($2, now())
               where (id = (select customer_id from customer_phones where e164 = $1) or id = $3)
                 and not do_not_call""",
            e164,
            now,
            customer_id,
        )
        if created:
            await audit.record(
                conn, added_by, "dnc.add", "do_not_call", e164, {"reason": reason, "source": source}
            )
        return row, created


async def lookup(conn: asyncpg.Connection, e164: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """select d.*, u.username as added_by_username
           from do_not_call d left join users u on u.id = d.added_by where d.e164 = $1""",
        e164,
    )


async def is_listed(conn: asyncpg.Connection, e164: str) -> bool:
    return bool(await conn.fetchval("select 1 from do_not_call where e164 = $1", e164))


async def remove(
    conn: asyncpg.Connection, e164: str, *, removed_by: int | None, reason: str
) -> None:
    """Take a number off the list (e.g. the customer asked to be called again).

    The customer's flag is cleared only when none of their numbers is still listed.
    """
    reason = (reason or "").strip()
    if not reason:
        raise MissingFields(
            "removing a number from the do-not-call list needs a reason", fields=["reason"]
        )
    async with conn.transaction():
        old = await conn.fetchrow("delete from do_not_call where e164 = $1 returning *", e164)
        if old is None:
            raise NotFound(f"{e164} is not on the do-not-call list")
        await conn.execute(
            """update customers c set do_not_call = false, updated_at = now()
               where c.id = (select customer_id from customer_phones where e164 = $1)
                 and not exists (select 1 from customer_phones p
                                 join do_not_call d on d.e164 = p.e164
                                 where p.customer_id = c.id)""",
            e164,
        )
        await audit.record(
            conn,
            removed_by,
            "dnc.remove",
            "do_not_call",
            e164,
            {
                "reason": reason,
                "was": {
                    "reason": old["reason"],
                    "source": old["source"],
                    "added_at": old["added_at"].isoformat(),
                },
            },
        )
