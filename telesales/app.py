"""The aiohttp application: wiring, login sessions, the role and CSRF guard, error answers.

To add routes: write a module under telesales/routes/ with `routes = RouteTable()`
and add it to ROUTE_MODULES below.
"""

from __future__ import annotations

import importlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp_jinja2
import asyncpg
import jinja2
from aiohttp import web
from aiohttp_session import get_session, session_middleware

from crm import worker_tokens
from crm.dispositions_catalog import Disposition
from crm.errors import UserError
from telesales import floor_feed
from telesales.sessions import PgSessionStorage
from telesales.web import Route, RouteTable, json_response

log = logging.getLogger("telesales.http")

ROUTE_MODULES = (
    "telesales.routes.health",
    "telesales.routes.auth",
    "telesales.routes.pages",
    "telesales.routes.users",
    "telesales.routes.campaigns",
    "telesales.routes.dispositions",
    "telesales.routes.customers",
    "telesales.routes.audit",
    "telesales.routes.complaints",
    "telesales.routes.follow_ups",
    "telesales.routes.orders",
    "telesales.routes.leads",
    "telesales.routes.qa_jobs",
    "telesales.routes.qa_recordings",
    "telesales.routes.agent",
    "telesales.routes.reports",
    "telesales.routes.qa_search",
    "telesales.routes.qa_review",
    "telesales.routes.monitoring",
    "telesales.routes.openapi",
    "telesales.routes.wallboard",
    "telesales.routes.inbound",
    "telesales.routes.live",
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class AppContext:
    """Everything handlers need, built once by the server (or a test) and passed in."""

    settings: SimpleNamespace
    pool: asyncpg.Pool
    catalog: dict[str, Disposition]
    # The softphone seats (telesales/seats.py); None in tests that need no telephony.
    seats: Any = None
    # The inbound queue (telesales/inbound.py); None where no seats run.
    inbound: Any = None


CTX = web.AppKey("ctx", AppContext)
ROUTES = web.AppKey("routes", list)


def all_routes() -> list[Route]:
    routes: list[Route] = []
    for name in ROUTE_MODULES:
        table: RouteTable = importlib.import_module(name).routes
        routes.extend(table.routes)
    return routes


def _error(status: int, error_id: str, message: str) -> web.Response:
    return json_response({"error": error_id, "message": message}, status=status)


def _is_page(request: web.Request) -> bool:
    return not request.path.startswith("/api/")


async def _load_user(request: web.Request) -> dict | None:
    session = await get_session(request)
    user_id = session.get("uid")
    if user_id is None:
        return None
    row = await request.app[CTX].pool.fetchrow(
        "select id, username, display_name, role, team_id, active from users where id = $1", user_id
    )
    if row is None or not row["active"]:
        session.invalidate()  # deactivated users lose their sessions at once
        return None
    return dict(row.items())


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _websocket_origin_ok(request: web.Request) -> bool:
    """Browsers always send Origin on a WebSocket handshake, and cookies ride along cross-site, so the
    handshake needs a matching Origin (cross-site WebSocket hijacking); clients without one are refused."""
    return "Origin" in request.headers and _same_origin(request)


async def _csrf_ok(request: web.Request) -> bool:
    session = await get_session(request)
    expected = session.get("csrf")
    token = request.headers.get("X-CSRF-Token")
    if token is None and request.content_type == "application/x-www-form-urlencoded":
        token = (await request.post()).get("csrf_token")
    return bool(expected) and isinstance(token, str) and secrets.compare_digest(token, expected)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _as_worker(request: web.Request, route: Route, token: str) -> web.StreamResponse:
    """A QA worker's request on a route open to worker tokens (read-only routes): the token replaces
    the session, its role and CSRF checks."""
    async with request.app[CTX].pool.acquire() as conn:
        worker = await worker_tokens.verify(conn, token)
    if worker is None:
        return _error(401, "bad_worker_token", "unknown or revoked worker token")
    request["user"] = None
    request["worker"] = dict(worker.items())
    return await route.handler(request)


def guarded(route: Route):
    """Wrap a handler with the route's declared access rule."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if route.worker_token and route.method in SAFE_METHODS and (token := _bearer(request)) is not None:
            return await _as_worker(request, route, token)
        if route.method not in SAFE_METHODS and not _same_origin(request):
            return _error(403, "cross_origin", "cross-site request refused")
        if _is_websocket(request) and not _websocket_origin_ok(request):
            return _error(403, "cross_origin", "WebSocket handshake without this site's Origin refused")
        user = await _load_user(request)
        request["user"] = user
        if not route.public:
            if user is None:
                if _is_page(request) and request.method == "GET":
                    raise web.HTTPFound(f"/login?next={request.path_qs}")
                return _error(401, "login_required", "log in first")
            if user["role"] not in route.roles:
                return _error(403, "forbidden", f"role {user['role']} may not use this")
            if route.csrf and request.method not in SAFE_METHODS and not await _csrf_ok(request):
                return _error(403, "csrf_failed", "missing or wrong CSRF token; reload the page")
        return await route.handler(request)

    handler.__name__ = route.handler.__name__
    return handler


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    """User mistakes become a JSON 4xx with a stable id; anything else a 500 with an incident id."""
    started = time.monotonic()
    try:
        response = await handler(request)
    except UserError as e:
        response = json_response(e.to_json(), status=e.status)
    except web.HTTPException:
        raise
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error", extra={"incident": incident, "path": request.path})
        response = _error(500, "internal_error", f"internal error; incident {incident} is logged")
    user = request.get("user")
    log.info(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "ms": round((time.monotonic() - started) * 1000, 1),
            "user_id": user["id"] if user else None,
        },
    )
    return response


def create_app(ctx: AppContext) -> web.Application:
    http = ctx.settings.http
    storage = PgSessionStorage(ctx.pool, max_age=http.session_max_age, secure=http.secure_cookies)
    app = web.Application(
        middlewares=[session_middleware(storage), errors_middleware],
        client_max_size=http.max_upload_mb * 1024 * 1024,
    )
    app[CTX] = ctx
    floor_feed.setup(app, ctx.pool, ctx.settings)  # the wallboard's hub and its database feed
    routes = all_routes()
    app[ROUTES] = routes
    for route in routes:
        app.router.add_route(route.method, route.path, guarded(route))
    here = Path(__file__).parent
    app.router.add_static("/static", here / "static")
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(here / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    return app
