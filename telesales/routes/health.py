"""GET /health: the service answers and its database does."""

from __future__ import annotations

import asyncio

from aiohttp import web

from telesales.app import CTX
from telesales.web import PUBLIC, RouteTable, json_response

routes = RouteTable()


@routes.get("/health", roles=PUBLIC, summary="Liveness and database check", tags=("service",))
async def health(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(2):
            await request.app[CTX].pool.fetchval("select 1")
    except Exception as e:  # any failure (refused, timeout, auth) means "not healthy"
        return json_response({"status": "unhealthy", "database": str(e) or type(e).__name__}, status=503)
    return json_response({"status": "ok", "database": "ok"})
