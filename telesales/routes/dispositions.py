"""Dispositions API: the codes, and recording a wrap-up (Idempotency-Key honoured)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from crm.dispositions import describe, record_disposition
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.web import ALL_ROLES, FLOOR, RouteTable, current_user, json_response, read_json

routes = RouteTable()


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
            qa_scorecard=ctx.settings.qa.scorecard,
        )

    return await run_idempotent(request, body, work, status=201)
