"""Customers API: lookup, create and edit customers, their communication record and surveys,
the customer file, and the do-not-call list."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from crm import customers as customer_store
from crm import dnc, surveys
from crm import interactions as interaction_store
from crm.errors import MissingFields
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.query_params import check_query, page_params
from telesales.web import (
    FLOOR,
    MANAGERS,
    BadRequest,
    RouteTable,
    current_user,
    int_param,
    json_response,
    read_json,
)

routes = RouteTable()

@routes.get(
    "/api/v1/customers",
    roles=FLOOR,
    tags=("customers",),
    summary="Find customers: ?q= (substring of name or company, any script), ?phone= (any "
    "format; without a country code it is read in crm.default_region), ?page=, ?per_page=. "
    'Answers {"items", "page", "per_page", "total"}: exact matches first, then by name',
)
async def search_customers(request: web.Request) -> web.Response:
    check_query(request, ("q", "phone", "page", "per_page"))
    page, per_page = page_params(request)
    ctx = request.app[CTX]
    async with ctx.pool.acquire() as conn:
        result = await customer_store.search(
            conn,
            q=request.query.get("q"),
            phone=request.query.get("phone"),
            default_region=ctx.settings.crm.default_region,
            page=page,
            per_page=per_page,
        )
    return json_response(result)


_PHONE = {
    "oneOf": [
        {"type": "string", "description": "any format; read in the customer's region"},
        {
            "type": "object",
            "required": ["number"],
            "properties": {
                "number": {"type": "string"},
                "label": {"type": "string"},
                "primary": {"type": "boolean"},
            },
        },
    ]
}
_CUSTOMER_FIELDS = {
    "name": {"type": "string"},
    "company": {"type": "string"},
    "email": {"type": ["string", "null"]},
    "source_channel": {"type": ["string", "null"], "description": "one of crm.source_channels"},
    "region": {"type": ["string", "null"], "description": "ISO 3166 code, e.g. CN"},
    "time_zone": {"type": ["string", "null"], "description": "IANA name, e.g. Asia/Shanghai"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "notes": {"type": "string"},
    "consent": {"type": "boolean"},
}


@routes.post(
    "/api/v1/customers",
    roles=FLOOR,
    tags=("customers",),
    summary="Create a customer with its numbers (201); a number of another customer is a 409 "
    "phone_taken naming that customer_id (Idempotency-Key honoured)",
    body={
        "type": "object",
        "additionalProperties": False,
        "properties": {**_CUSTOMER_FIELDS, "phones": {"type": "array", "items": _PHONE}},
    },
)
async def create_customer(request: web.Request) -> web.Response:
    body = await read_json(request)
    ctx = request.app[CTX]
    user_id = current_user(request)["id"]

    async def work(conn: asyncpg.Connection) -> dict:
        return await customer_store.create_customer(
            conn,
            body,
            default_region=ctx.settings.crm.default_region,
            user_id=user_id,
            source_channels=ctx.settings.crm.source_channels,
        )

    return await run_idempotent(request, body, work, status=201)


@routes.patch(
    "/api/v1/customers/{customer_id}",
    roles=FLOOR,
    tags=("customers",),
    summary="Change a customer's fields; add_phones / remove_phones change its numbers, phones "
    "replaces them all. Unknown fields are a 422; the audit log keeps old -> new "
    "(Idempotency-Key honoured)",
    body={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **_CUSTOMER_FIELDS,
            "phones": {"type": "array", "items": _PHONE},
            "add_phones": {"type": "array", "items": _PHONE},
            "remove_phones": {"type": "array", "items": {"type": "string"}},
        },
    },
)
async def update_customer(request: web.Request) -> web.Response:
    customer_id = int_param(request, "customer_id")
    body = await read_json(request)
    ctx = request.app[CTX]
    user_id = current_user(request)["id"]

    async def work(conn: asyncpg.Connection) -> dict:
        return await customer_store.update_customer(
            conn,
            customer_id,
            body,
            default_region=ctx.settings.crm.default_region,
            user_id=user_id,
            source_channels=ctx.settings.crm.source_channels,
        )

    return await run_idempotent(request, body, work)


@routes.post(
    "/api/v1/customers/{customer_id}/interactions",
    roles=FLOOR,
    tags=("customers",),
    summary="Add a note, email or sms to the customer's communication record (201; "
    "Idempotency-Key honoured)",
    body={
        "type": "object",
        "required": ["kind", "summary"],
        "additionalProperties": False,
        "properties": {
            "kind": {"enum": list(interaction_store.MANUAL_KINDS)},
            "summary": {"type": "string"},
            "details": {"type": "object"},
            "occurred_at": {"type": "string", "format": "date-time", "description": "default now"},
            "call_id": {"type": "string", "format": "uuid"},
        },
    },
)
async def add_interaction(request: web.Request) -> web.Response:
    customer_id = int_param(request, "customer_id")
    body = await read_json(request)
    user_id = current_user(request)["id"]

    async def work(conn: asyncpg.Connection) -> dict:
        return await interaction_store.record_manual(conn, customer_id, body, user_id=user_id)

    return await run_idempotent(request, body, work, status=201)


@routes.get(
    "/api/v1/customers/{customer_id}/interactions",
    roles=FLOOR,
    tags=("customers",),
    summary="The customer's communication record in time order, oldest first (?order=desc: "
    'newest first), ?page=, ?per_page=; answers {"items", "page", "per_page", "total"}',
)
async def list_interactions(request: web.Request) -> web.Response:
    customer_id = int_param(request, "customer_id")
    check_query(request, ("page", "per_page", "order"))
    order = request.query.get("order", "asc")
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc", fields=["order"])
    page, per_page = page_params(request)
    async with request.app[CTX].pool.acquire() as conn:
        result = await interaction_store.page_for_customer(
            conn, customer_id, page=page, per_page=per_page, newest_first=order == "desc"
        )
    return json_response(result)


@routes.post(
    "/api/v1/customers/{customer_id}/surveys",
    roles=FLOOR,
    tags=("customers",),
    summary="Record a satisfaction survey the customer answered (scores 0-10), all answers or "
    "none, with one 'survey' entry in the communication record (201; Idempotency-Key honoured)",
    body={
        "type": "object",
        "required": ["survey", "answers"],
        "additionalProperties": False,
        "properties": {
            "survey": {"type": "string"},
            "call_id": {"type": "string", "format": "uuid"},
            "answers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["question"],
                    "properties": {
                        "question": {"type": "string"},
                        "answer": {"type": "string"},
                        "score": {"type": "integer", "minimum": 0, "maximum": 10},
                    },
                },
            },
        },
    },
)
async def record_survey(request: web.Request) -> web.Response:
    customer_id = int_param(request, "customer_id")
    body = await read_json(request)
    user_id = current_user(request)["id"]

    async def work(conn: asyncpg.Connection) -> dict:
        return await surveys.record_for_customer(conn, customer_id, body, user_id=user_id)

    return await run_idempotent(request, body, work, status=201)


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
