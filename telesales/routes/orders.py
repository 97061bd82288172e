"""Orders API: a customer's orders, and a supervisor moving an order on (delivered, or
cancelled with a reason). Orders are created by a SALE wrap-up (routes/dispositions.py)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from crm import orders
from crm.errors import MissingFields, UserError
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.web import FLOOR, MANAGERS, RouteTable, current_user, int_param, json_response, read_json

routes = RouteTable()

STATUS_FIELDS = ("status", "reason")


@routes.get(
    "/api/v1/customers/{customer_id}/orders",
    roles=FLOOR,
    tags=("orders",),
    summary="The customer's orders, newest first: product, quantity, price, total, delivery, "
    "payment and status",
)
async def list_customer_orders(request: web.Request) -> web.Response:
    customer_id = int_param(request, "customer_id")
    async with request.app[CTX].pool.acquire() as conn:
        rows = await orders.for_customer(conn, customer_id)
    return json_response({"customer_id": customer_id, "items": [dict(r.items()) for r in rows]})


@routes.post(
    "/api/v1/orders/{order_id}/status",
    roles=MANAGERS,
    tags=("orders",),
    summary="Move a confirmed order to delivered, or to cancelled with a reason; any other "
    "change is 409 illegal_state_change (Idempotency-Key honoured)",
    body={
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["delivered", "cancelled"]},
            "reason": {"type": "string", "description": "required when cancelling"},
        },
    },
)
async def change_order_status(request: web.Request) -> web.Response:
    order_id = int_param(request, "order_id")
    body = await read_json(request)
    unknown = sorted(set(body) - set(STATUS_FIELDS))
    if unknown:
        raise UserError(f"unknown fields: {', '.join(unknown)}", fields=unknown)
    if not isinstance(body.get("status"), str) or not body["status"]:
        raise MissingFields("status is required", fields=["status"])
    user = current_user(request)

    async def work(conn: asyncpg.Connection) -> dict:
        row = await orders.set_status(
            conn, order_id, body["status"], user_id=user["id"], reason=body.get("reason")
        )
        return dict(row.items())

    return await run_idempotent(request, body, work)
