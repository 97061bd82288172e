"""The audit log: who did what to which record."""

from __future__ import annotations

import datetime as dt
import re

import asyncpg

from crm.fields import InvalidValue, check_text, parse_time
from crm.paging import page_of


async def record(
    conn: asyncpg.Connection,
    user_id: int | None,
    action: str,
    entity: str,
    entity_id: str | int | None,
    details: dict | None = None,
) -> None:
    await conn.execute(
        """insert into audit_log (user_id, action, entity, entity_id, details)
           values ($1, $2, $3, $4, $5)""",
        user_id, action, entity, None if entity_id is None else str(entity_id), details or {},
    )


FILTERS = ("entity", "entity_id", "user_id", "action", "since", "until")


async def search(
    conn: asyncpg.Connection,
    *,
    entity: str | None = None,
    entity_id: str | None = None,
    user_id: int | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    page: int,
    per_page: int,
) -> dict:
    """One page of the log, newest first, with each row's username; filters are exact matches,
    since inclusive, until exclusive. (at, id) descending is a total order, so pages neither
    skip nor repeat; one snapshot, so the total agrees with the page."""
    if since is not None and until is not None and since >= until:
        raise InvalidValue("since must be before until", fields=["since", "until"])
    args: list = []
    where = []
    for column, value in (
        ("a.entity", entity),
        ("a.entity_id", entity_id),
        ("a.user_id", user_id),
        ("a.action", action),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if since is not None:
        args.append(since)
        where.append(f"a.at >= ${len(args)}")
    if until is not None:
        args.append(until)
        where.append(f"a.at < ${len(args)}")
    condition = " and ".join(where) or "true"
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval(f"select count(*) from audit_log a where {condition}", *args)
        rows = await conn.fetch(
            f"""select a.*, u.username
                from audit_log a left join users u on u.id = a.user_id
                where {condition}
                order by a.at desc, a.id desc
                limit ${len(args) + 1} offset ${len(args) + 2}""",
            *args,
            per_page,
            (page - 1) * per_page,
        )
    return page_of(rows, page, per_page, total)


def parse_filters(query) -> dict:
    """search()'s filters from query-string text ({name: str}), each checked and named."""
    filters: dict = {}
    for name in ("entity", "entity_id", "action"):
        value = check_text(query.get(name), name, max_len=200)
        if value:
            filters[name] = value
    raw_user = (query.get("user_id") or "").strip()
    if raw_user:
        if not re.fullmatch(r"[0-9]{1,18}", raw_user):
            raise InvalidValue(f"user_id must be a user id, got {raw_user[:40]!r}", fields=["user_id"])
        filters["user_id"] = int(raw_user)
    for name in ("since", "until"):
        raw = query.get(name)
        if isinstance(raw, str):
            # An unencoded "+08:00" in a query string arrives as " 08:00".
            raw = re.sub(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)$", r"\1+\2", raw.strip())
        value = parse_time(raw, name)
        if value is not None:
            filters[name] = value
    return filters
