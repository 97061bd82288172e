"""Customers API: the customer file, and the do-not-call list."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from crm import customers as customer_store
from crm import dnc
from crm.errors import MissingFields
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.web import (
    FLOOR,
    MANAGERS,
    RouteTable,
    current_user,
    int_param,
    json_response,
    read_json,
)

routes = RouteTable()


@routes.get(
    "/api/v1/customers/{customer_id}",
    roles=FLOOR,
    tags=("customers",),
    summary="The customer file: numbers, leads, calls with dispositions, orders, open "
    "complaints, follow-ups and interactions in time order",
)
async def get_customer_file(request: web.Request) -> web.Response:
    customer_id = int_param(request, "customer_id")
    async with request.app[CTX].pool.acquire() as conn:
        return json_response(await customer_store.customer_file(conn, customer_id))


def _number(request: web.Request, value) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MissingFields("number is required", fields=["number"])
    return customer_store.normalise_phone(
        value, request.app[CTX].settings.crm.default_region, field="number"
    )


@routes.get(
    "/api/v1/do-not-call",
    roles=MANAGERS,
    tags=("compliance",),
    summary="Is a number on the do-not-call list? (?number=, any common format)",
)
async def lookup_dnc(request: web.Request) -> web.Response:
    number = _number(request, request.query.get("number"))
    entry = await dnc.lookup(request.app[CTX].pool, number)
    return json_response(
        {
            "number": number,
            "listed": entry is not None,
            "entry": None if entry is None else dict(entry.items()),
        }
    )


@routes.post(
    "/api/v1/do-not-call",
    roles=MANAGERS,
    tags=("compliance",),
    summary="Put a number on the do-not-call list (Idempotency-Key honoured)",
    body={
        "type": "object",
        "required": ["number", "reason"],
        "properties": {
            "number": {"type": "string"},
            "reason": {"type": "string"},
            "source": {"enum": list(dnc.SOURCES), "default": "customer_request"},
        },
    },
)
async def add_dnc(request: web.Request) -> web.Response:
    body = await read_json(request)
    number = _number(request, body.get("number"))
    user = current_user(request)

    async def work(conn: asyncpg.Connection) -> dict:
        entry, created = await dnc.add(
            conn,
            number,
            body.get("reason") or "",
            source=body.get("source") or "customer_request",
            added_by=user["id"],
        )
        return {"number": number, "created": created, "entry": dict(entry.items())}

    # 201 for a new entry; 200 when the number was already listed (its first entry stands)
    return await run_idempotent(request, body, work, status=lambda r: 201 if r["created"] else 200)
