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
