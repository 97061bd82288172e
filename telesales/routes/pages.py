"""Server-rendered pages. Later issues add the agent desk, QA review and wallboard."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from telesales.web import ALL_ROLES, RouteTable

routes = RouteTable()


@routes.get("/", roles=ALL_ROLES, summary="Home page for the logged-in user", tags=("pages",))
@aiohttp_jinja2.template("home.html")
async def home(request: web.Request) -> dict:
    session = await get_session(request)
    return {"user": request["user"], "csrf_token": session["csrf"]}
