"""The audit log: who did what to which record."""

from __future__ import annotations

import asyncpg


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
