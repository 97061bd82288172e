"""Routes with their roles declared beside them, and the JSON helpers handlers share.

Each routes module has `routes = RouteTable()` and decorates its handlers:

    @routes.post("/api/v1/things", roles=STAFF, summary="Create a thing")
    async def create_thing(request): ...

The table is the single source for three things: the aiohttp router, the
role check (telesales/app.py's middleware reads the route's roles), and the
OpenAPI document. The route-by-role test walks the same table.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from crm.errors import UserError
from crm.json_values import json_default

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALL_ROLES = frozenset({"agent", "qa", "supervisor", "admin"})
PUBLIC = frozenset()  # no login needed
ADMIN = frozenset({"admin"})
MANAGERS = frozenset({"supervisor", "admin"})
FLOOR = frozenset({"agent", "supervisor", "admin"})  # those who work customers and calls


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: frozenset[str]
    summary: str
    # Form posts from our own pages and JSON API calls both carry the token;
    # only login (no session yet) is exempt.
    csrf: bool = True
    tags: tuple[str, ...] = ()
    body: dict | None = field(default=None, compare=False)
    # Also open to a QA worker presenting a live worker token (Authorization: Bearer ...), no session.
    worker_token: bool = False

    @property
    def public(self) -> bool:
        return not self.roles


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, path: str, *, roles: frozenset[str], summary: str, **extra):
        def decorate(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, frozenset(roles), summary, **extra))
            return handler

        return decorate

    def get(self, path: str, **kw):
        return self.add("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.add("POST", path, **kw)

    def put(self, path: str, **kw):
        return self.add("PUT", path, **kw)

    def patch(self, path: str, **kw):
        return self.add("PATCH", path, **kw)

    def delete(self, path: str, **kw):
        return self.add("DELETE", path, **kw)


def dumps(data: Any) -> str:
    return json.dumps(data, default=json_default, ensure_ascii=False)


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def record(row) -> dict | None:
    return None if row is None else dict(row.items())


async def read_json(request: web.Request) -> dict:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


BIGINT_MAX = 2**63 - 1  # ids are PostgreSQL bigint


def int_param(request: web.Request, name: str) -> int:
    """A numeric id from the path, or a 400 (not a 500 from the database) naming it."""
    value = request.match_info[name]
    if not value.isascii() or not value.isdigit() or int(value) > BIGINT_MAX:
        raise BadRequest(f"{name} must be a whole number id, got {value!r}", fields=[name])
    return int(value)


class BadRequest(UserError):
    status = 400
    error_id = "bad_request"


def current_user(request: web.Request) -> dict:
    """The logged-in user (id, username, role, team_id); routes with roles always have one."""
    return request["user"]
