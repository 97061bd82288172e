"""Campaigns API."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from crm import audit
from crm import campaigns as campaign_store
from telesales.app import CTX
from telesales.web import (
    ADMIN,
    ALL_ROLES,
    MANAGERS,
    RouteTable,
    UserError,
    current_user,
    int_param,
    json_response,
    read_json,
)

routes = RouteTable()


@routes.get("/api/v1/campaigns", roles=ALL_ROLES, summary="List campaigns", tags=("campaigns",))
async def list_campaigns(request: web.Request) -> web.Response:
    rows = await campaign_store.list_campaigns(request.app[CTX].pool)
    return json_response([dict(r.items()) for r in rows])


@routes.get("/api/v1/campaigns/{campaign_id}", roles=ALL_ROLES, summary="One campaign",
            tags=("campaigns",))
async def get_campaign(request: web.Request) -> web.Response:
    row = await campaign_store.get_campaign(request.app[CTX].pool, int_param(request, "campaign_id"))
    return json_response(dict(row.items()))


def _parse_times(fields: dict) -> dict:
    for key in ("calling_window_start", "calling_window_end"):
        if key in fields:
            try:
                fields[key] = dt.time.fromisoformat(str(fields[key]))
            except ValueError:
                raise UserError(f"{key} must be a time like 09:00", fields=[key]) from None
    return fields


@routes.post("/api/v1/campaigns", roles=ADMIN, summary="Create a campaign", tags=("campaigns",))
async def create_campaign(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = str(body.pop("name", ""))
    async with request.app[CTX].pool.acquire() as conn, conn.transaction():
        row = await campaign_store.create_campaign(conn, name, **_parse_times(body))
        await audit.record(conn, current_user(request)["id"], "campaign.create", "campaign", row["id"])
    return json_response(dict(row.items()), status=201)


@routes.patch("/api/v1/campaigns/{campaign_id}", roles=MANAGERS, tags=("campaigns",),
              summary="Change a campaign's settings: dialing mode, script, calling window "
              "(calling_window_start/end, the customer's local time), max_attempts_per_day, "
              "max_attempts_total, min_retry_minutes, requires_consent, allowed_prefixes (E.164 "
              "prefixes; empty: the default region only), callbacks_any_agent, ...")
async def update_campaign(request: web.Request) -> web.Response:
    campaign_id = int_param(request, "campaign_id")
    body = _parse_times(await read_json(request))
    async with request.app[CTX].pool.acquire() as conn, conn.transaction():
        row = await campaign_store.update_campaign(conn, campaign_id, **body)
        await audit.record(conn, current_user(request)["id"], "campaign.update", "campaign", campaign_id,
                           {k: str(v) for k, v in body.items()})
    return json_response(dict(row.items()))
