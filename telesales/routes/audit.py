"""Audit log API: who did what to which record, for admins."""

from __future__ import annotations

from aiohttp import web

from crm import audit
from telesales.app import CTX
from telesales.query_params import check_query, page_params
from telesales.web import ADMIN, RouteTable, json_response

routes = RouteTable()


@routes.get(
    "/api/v1/audit",
    roles=ADMIN,
    tags=("audit",),
    summary="The audit log, newest first: ?entity=, ?entity_id=, ?user_id=, ?action= (exact), "
    "?since= (inclusive), ?until= (exclusive; ISO 8601 with a UTC offset), ?page=, ?per_page=; "
    'answers {"items", "page", "per_page", "total"}',
)
async def read_audit_log(request: web.Request) -> web.Response:
    check_query(request, (*audit.FILTERS, "page", "per_page"))
    filters = audit.parse_filters(request.query)
    page, per_page = page_params(request)
    async with request.app[CTX].pool.acquire() as conn:
        return json_response(await audit.search(conn, **filters, page=page, per_page=per_page))
