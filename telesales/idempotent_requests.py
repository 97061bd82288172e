"""State-changing requests that honour an Idempotency-Key header (see crm/idempotency.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from crm import idempotency
from telesales.app import CTX
from telesales.web import current_user, json_response

REPLAYED_HEADER = "Idempotent-Replayed"


async def run_idempotent(
    request: web.Request,
    body: dict,
    work: Callable[[asyncpg.Connection], Awaitable[Any]],
    *,
    status: int | Callable[[Any], int] = 200,
) -> web.Response:
    """Run work(conn) in one transaction; with an Idempotency-Key header, at most once per
    (user, key): a retry gets the first answer (and the Idempotent-Replayed header).
    status: the answer's status, or a function of the result giving it."""
    ctx = request.app[CTX]

    def status_of(result: Any) -> int:
        return status(result) if callable(status) else status

    key = request.headers.get("Idempotency-Key")
    if key is None:
        async with ctx.pool.acquire() as conn, conn.transaction():
            result = await work(conn)
        return json_response(result, status=status_of(result))

    async def answer(conn: asyncpg.Connection) -> tuple[int, Any]:
        result = await work(conn)
        return status_of(result), result

    code, result, replayed = await idempotency.run_once(
        ctx.pool,
        current_user(request)["id"],
        key,
        body,
        answer,
        scope=f"{request.method} {request.path}",
    )
    return json_response(
        result, status=code, headers={REPLAYED_HEADER: "true"} if replayed else None
    )
