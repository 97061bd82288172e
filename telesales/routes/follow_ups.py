"""Follow-ups (callbacks) API: the list to work from, and closing one as done or cancelled.

Supervisors and admins see and close every follow-up. An agent sees and closes their
own and the unowned ("anyone") ones; missed is set by the scheduler
(crm.follow_ups.mark_missed), not by hand.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from crm import follow_ups
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.query_params import page_params, query_bool, query_time
from telesales.web import FLOOR, RouteTable, current_user, int_param, json_response

routes = RouteTable()

@routes.get(
    "/api/v1/follow-ups",
    roles=FLOOR,
    tags=("follow-ups",),
    summary="Follow-ups, soonest due first, with the customer and the number to call "
    "(?status=open|done|missed|cancelled, ?due_before=<ISO time with offset>, ?mine=true, "
    "?page=, ?per_page=). Agents see their own and the unowned ones",
)
async def list_follow_ups(request: web.Request) -> web.Response:
    user = current_user(request)
    page, per_page = page_params(request)
    async with request.app[CTX].pool.acquire() as conn:
        result = await follow_ups.list_follow_ups(
            conn,
            user_id=user["id"],
            sees_all=user["role"] != "agent",
            status=request.query.get("status") or None,
            due_before=query_time(request, "due_before"),
            mine=bool(query_bool(request, "mine")),
            page=page,
            per_page=per_page,
        )
    return json_response(result)


async def _close(request: web.Request, status: str) -> web.Response:
    follow_up_id = int_param(request, "follow_up_id")
    user = current_user(request)

    async def work(conn: asyncpg.Connection) -> dict:
        row = await follow_ups.close(
            conn,
            follow_up_id,
            status,
            user_id=user["id"],
            agent_id=user["id"] if user["role"] == "agent" else None,
        )
        return dict(row.items())

    return await run_idempotent(request, {"follow_up_id": follow_up_id, "status": status}, work)


@routes.post(
    "/api/v1/follow-ups/{follow_up_id}/done",
    roles=FLOOR,
    tags=("follow-ups",),
    summary="Mark an open follow-up done (agents: their own or unowned ones; "
    "Idempotency-Key honoured)",
)
async def mark_done(request: web.Request) -> web.Response:
    return await _close(request, "done")


@routes.post(
    "/api/v1/follow-ups/{follow_up_id}/cancel",
    roles=FLOOR,
    tags=("follow-ups",),
    summary="Cancel an open follow-up (agents: their own or unowned ones; "
    "Idempotency-Key honoured)",
)
async def cancel(request: web.Request) -> web.Response:
    return await _close(request, "cancelled")
