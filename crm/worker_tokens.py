"""Worker tokens: how a QA worker on another machine proves itself to the service's recording API.

A token is shown once when made; only its sha256 is stored, so a copy of the
database gives no working tokens. Revoking one takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from crm import audit
from crm.errors import Conflict, NotFound, UserError

PREFIX = "tsw_"  # makes a leaked token recognisable in logs and secret scanners


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(conn: asyncpg.Connection, name: str) -> tuple[asyncpg.Record, str]:
    """A new token for the worker (or worker machine) `name`; returns (row, token)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise UserError("a worker token needs a name of 1 to 100 characters", fields=["name"])
    token = PREFIX + secrets.token_urlsafe(32)
    async with conn.transaction():
        try:
            row = await conn.fetchrow(
                "insert into qa_worker_tokens (name, token_sha256) values ($1, $2) returning id, name, created_at",
                name,
                _digest(token),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a worker token named {name!r} exists (revoked ones keep their name)",
                           fields=["name"]) from None
        await audit.record(conn, None, "qa_worker_token.create", "qa_worker_token", row["id"], {"name": name})
    return row, token


async def verify(conn: asyncpg.Connection, token: str) -> asyncpg.Record | None:
    """The live token's row (id, name), noting its use; None for an unknown or revoked token."""
    if not token.startswith(PREFIX):
        return None
    return await conn.fetchrow(
        """update qa_worker_tokens set last_used_at = now()
           where token_sha256 = $1 and revoked_at is null returning id, name""",
        _digest(token),
    )


async def revoke(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    async with conn.transaction():
        row = await conn.fetchrow(
            """update qa_worker_tokens set revoked_at = coalesce(revoked_at, now())
               where name = $1 returning id, name, revoked_at""",
            name,
        )
        if row is None:
            raise NotFound(f"no worker token named {name!r}")
        await audit.record(conn, None, "qa_worker_token.revoke", "qa_worker_token", row["id"], {"name": name})
    return row


async def list_tokens(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select id, name, created_at, last_used_at, revoked_at from qa_worker_tokens order by name"
    )
