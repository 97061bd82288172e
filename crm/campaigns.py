"""Campaigns: outbound sales or inbound service, with their dialing and compliance rules."""

from __future__ import annotations

import re

import asyncpg

from crm.errors import Conflict, NotFound, UserError

KINDS = ("outbound_sales", "inbound_service")
DIALING_MODES = ("preview", "progressive", "predictive", "inbound")

# Columns a caller may set when creating a campaign; the rest keep their defaults.
SETTABLE = (
    "kind", "dialing_mode", "script", "calling_window_start", "calling_window_end",
    "max_attempts_per_day", "max_attempts_total", "min_retry_minutes", "scorecard",
    "recording_notice", "requires_consent", "allowed_prefixes", "active", "callbacks_any_agent",
)
_PREFIX = re.compile(r"^\+[0-9]{1,15}$")


def _check_fields(fields: dict) -> None:
    unknown = set(fields) - set(SETTABLE)
    if unknown:
        raise UserError(f"unknown campaign fields: {', '.join(sorted(unknown))}", fields=sorted(unknown))
    if fields.get("kind", KINDS[0]) not in KINDS:
        raise UserError(f"kind must be one of {', '.join(KINDS)}", fields=["kind"])
    if fields.get("dialing_mode", DIALING_MODES[0]) not in DIALING_MODES:
        raise UserError(f"dialing_mode must be one of {', '.join(DIALING_MODES)}", fields=["dialing_mode"])
    prefixes = fields.get("allowed_prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) and _PREFIX.match(p) for p in prefixes):
        raise UserError('allowed_prefixes must be a list of E.164 prefixes like "+86" or "+8621"',
                        fields=["allowed_prefixes"])


async def create_campaign(conn: asyncpg.Connection, name: str, **fields) -> asyncpg.Record:
    name = name.strip()
    if not name:
        raise UserError("a campaign needs a name", fields=["name"])
    _check_fields(fields)
    columns = ["name", *fields]
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    try:
        return await conn.fetchrow(
            f"insert into campaigns ({', '.join(columns)}) values ({placeholders}) returning *",
            name, *fields.values(),
        )
    except asyncpg.UniqueViolationError:
        raise Conflict(f"campaign {name!r} already exists", fields=["name"]) from None
    except (asyncpg.CheckViolationError, asyncpg.DataError) as e:
        raise UserError(f"invalid campaign: {e}") from None


async def update_campaign(conn: asyncpg.Connection, campaign_id: int, **fields) -> asyncpg.Record:
    """Change the settable fields given (dialing rules, window, limits...); the rest stay."""
    _check_fields(fields)
    if not fields:
        return await get_campaign(conn, campaign_id)
    sets = ", ".join(f"{column} = ${i}" for i, column in enumerate(fields, start=2))
    try:
        row = await conn.fetchrow(
            f"update campaigns set {sets} where id = $1 returning *", campaign_id, *fields.values()
        )
    except (asyncpg.CheckViolationError, asyncpg.DataError) as e:
        raise UserError(f"invalid campaign: {e}") from None
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    return row


async def get_campaign(conn: asyncpg.Connection, campaign_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("select * from campaigns where id = $1", campaign_id)
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    return row


async def find_campaign(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await conn.fetchrow("select * from campaigns where name = $1", name)
    if row is None:
        raise NotFound(f"no campaign named {name!r}")
    return row


async def list_campaigns(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("select * from campaigns order by name")
