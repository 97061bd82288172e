"""Complaints API: one complaint with its history, and state changes.

Supervisors and admins make any legal change. An agent works the complaints
they own: they may start one (in_progress) and resolve it, but not assign,
reopen or confirm, which are a supervisor's calls.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from crm import complaints
from crm.errors import MissingFields, NotFound, UserError
from telesales.app import CTX
from telesales.idempotent_requests import run_idempotent
from telesales.web import (
    FLOOR,
    BadRequest,
    RouteTable,
    current_user,
    int_param,
    json_response,
    read_json,
)

routes = RouteTable()

AGENT_STATES = frozenset({"in_progress", "resolved"})


class NotComplaintOwner(UserError):
    status = 403
    error_id = "not_complaint_owner"


@routes.get(
    "/api/v1/complaints/{complaint_id}",
    roles=FLOOR,
    tags=("complaints",),
    summary="A complaint with its state changes and evidence files",
)
async def get_complaint(request: web.Request) -> web.Response:
    complaint_id = int_param(request, "complaint_id")
    async with request.app[CTX].pool.acquire() as conn:
        return json_response(await complaints.get_complaint(conn, complaint_id))


@routes.post(
    "/api/v1/complaints/{complaint_id}/transitions",
    roles=FLOOR,
    tags=("complaints",),
    summary="Change a complaint's state (agents: only their own, to in_progress or resolved); "
    "Idempotency-Key honoured",
    body={
        "type": "object",
        "required": ["state"],
        "properties": {
            "state": {"enum": list(complaints.STATES)},
            "note": {"type": "string"},
            "department": {"type": "string"},
            "owner_id": {"type": "integer"},
            "resolution": {"type": "string"},
        },
    },
)
async def change_complaint_state(request: web.Request) -> web.Response:
    complaint_id = int_param(request, "complaint_id")
    body = await read_json(request)
    state = body.get("state")
    if not isinstance(state, str) or not state:
        raise MissingFields("state is required", fields=["state"])
    for key in ("note", "department", "resolution"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise BadRequest(f"{key} must be text", fields=[key])
    owner_id = body.get("owner_id")
    if owner_id is not None and (isinstance(owner_id, bool) or not isinstance(owner_id, int)):
        raise BadRequest("owner_id must be a user id", fields=["owner_id"])
    user = current_user(request)
    ctx = request.app[CTX]

    async def work(conn: asyncpg.Connection) -> dict:
        if user["role"] == "agent":
            owner = await conn.fetchrow(
                "select owner_id from complaints where id = $1 for update", complaint_id
            )
            if owner is None:
                raise NotFound(f"no complaint {complaint_id}")
            if owner["owner_id"] != user["id"] or state not in AGENT_STATES or owner_id is not None:
                raise NotComplaintOwner(
                    "agents may only start or resolve complaints they own; ask a supervisor"
                )
        row = await complaints.transition(
            conn,
            complaint_id,
            state,
            user_id=user["id"],
            departments=ctx.settings.crm.departments,
            note=body.get("note") or "",
            department=body.get("department"),
            owner_id=owner_id,
            resolution=body.get("resolution"),
        )
        return dict(row.items())

    return await run_idempotent(request, body, work)
