"""GET /api/v1/openapi.json, generated from the route tables (with each route's roles)."""

from __future__ import annotations

import re

from aiohttp import web

from telesales import __version__
from telesales.app import ROUTES
from telesales.web import PUBLIC, RouteTable, json_response

routes = RouteTable()


def build_document(all_routes) -> dict:
    paths: dict[str, dict] = {}
    for route in all_routes:
        if not route.path.startswith("/api/") and route.path != "/health":
            continue
        params = re.findall(r"{(\w+)}", route.path)
        operation = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "tags": list(route.tags),
            "x-roles": sorted(route.roles) or ["anonymous"],
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
            ],
            "responses": {"200": {"description": "OK"}},
        }
        if not route.public:
            operation["security"] = [{"session": []}, *([{"worker_token": []}] if route.worker_token else [])]
            operation["responses"].update({"401": {"description": "Not logged in"},
                                           "403": {"description": "Role not allowed or CSRF failed"}})
        if route.method not in ("GET", "DELETE"):
            operation["requestBody"] = {"content": {"application/json": {"schema": route.body or {"type": "object"}}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "telesales API", "version": __version__},
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "telesales_session",
                            "description": "Log in with POST /api/v1/session; send X-CSRF-Token on writes"},
                "worker_token": {"type": "http", "scheme": "bearer",
                                 "description": "A QA worker token: telesales qa token create NAME"},
            }
        },
        "paths": paths,
    }


@routes.get("/api/v1/openapi.json", roles=PUBLIC, summary="This API's OpenAPI document", tags=("service",))
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_document(request.app[ROUTES]))
