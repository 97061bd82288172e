"""Dispositions API: the codes, and recording a wrap-up (Idempotency-Key honoured)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from crm import idempotency
from crm.dispositions import describe, record_disposition
from telesales.app import CTX
from telesales.web import ALL_ROLES, FLOOR, RouteTable, current_user, json_response, read_json

routes = RouteTable()

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


@routes.get(
    "/api/v1/dispositions",
    roles=ALL_ROLES,
    tags=("dispositions",),
    summary="Disposition codes with their flags, retry rules and required parts",
)
async def list_dispositions(request: web.Request) -> web.Response:
    return json_response(describe(request.app[CTX].catalog))


@routes.post(
    "/api/v1/dispositions",
    roles=FLOOR,
    tags=("dispositions",),
    summary="Record a call's wrap-up: lead status and next attempt, plus the order, follow-up, "
    "complaint or do-not-call entry the code requires (Idempotency-Key honoured)",
    body={
        "type": "object",
        "required": ["code"],
        "properties": {
            "code": {"type": "string"},
            "call_id": {"type": "string", "format": "uuid"},
            "lead_id": {"type": "integer"},
            "note": {"type": "string"},
            "order": {
                "type": "object",
                "properties": {
                    "product": {"type": "string"},
                    "quantity": {"type": ["number", "string"]},
                    "unit_price": {"type": ["number", "string"]},
                    "currency": {"type": "string"},
                    "delivery_date": {"type": "string", "format": "date"},
                    "delivery_address": {"type": "string"},
                    "payment_method": {"type": "string"},
                },
            },
            "follow_up": {
                "type": "object",
                "properties": {
                    "due_at": {"type": "string", "format": "date-time"},
                    "owner": {"enum": ["me", "anyone"]},
                    "note": {"type": "string"},
                },
            },
            "complaint": {
                "type": "object",
                "properties": {
                    "complainant": {"type": "string"},
                    "channel": {"type": "string"},
                    "content": {"type": "string"},
                    "department": {"type": "string"},
                },
            },
        },
    },
)
async def create_disposition(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    crm = ctx.settings.crm
    user = current_user(request)
    body = await read_json(request)

    async def work(conn: asyncpg.Connection) -> dict:
        return await record_disposition(
            conn,
            ctx.catalog,
            body,
            agent_id=user["id"],
            payment_methods=crm.payment_methods,
            departments=crm.departments,
            default_currency=crm.default_currency,
            ack_hours=crm.complaint_ack_hours,
            resolve_hours=crm.complaint_resolve_hours,
            # agents wrap up their own calls; supervisors may wrap up anyone's
            own_calls_only=user["role"] == "agent",
        )

    return await run_idempotent(request, body, work, status=201)
