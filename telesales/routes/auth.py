"""Login and logout, for the JSON API and for the login page."""

from __future__ import annotations

import datetime as dt
import secrets

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session, new_session

from crm import agent_status, audit
from crm import users as user_store
from crm.errors import UserError
from telesales.app import CTX
from telesales.passwords import verify_password
from telesales.web import ALL_ROLES, PUBLIC, BadRequest, RouteTable, json_response, read_json

routes = RouteTable()


class TooManyFailures(UserError):
    status = 429
    error_id = "too_many_failed_logins"


async def _check_not_locked(request: web.Request, username: str) -> None:
    """Refuse a name with too many recent failures: stops password guessing, costs a user a wait."""
    http = request.app[CTX].settings.http
    failures = await request.app[CTX].pool.fetchval(
        """select count(*) from audit_log where action = 'user.login_failed' and entity = 'user'
               and entity_id = $1 and at > now() - make_interval(mins => $2)""",
        username.lower(), http.login_lockout_minutes,
    )
    if failures >= http.login_max_failures:
        raise TooManyFailures(f"too many failed logins for {username!r}; "
                              f"try again in {http.login_lockout_minutes} minutes")


async def _login(request: web.Request, username: str, password: str) -> dict | None:
    """Check the password; on success start a fresh session (new id, new CSRF token)."""
    pool = request.app[CTX].pool
    await _check_not_locked(request, username)
    row = await user_store.find_by_username(pool, username) if username else None
    ok = verify_password(row["password_hash"] if row else None, password)
    if not ok or not row["active"]:
        async with pool.acquire() as conn:
            await audit.record(conn, row["id"] if row else None, "user.login_failed", "user", username.lower())
        return None
    session = await new_session(request)  # a new session id on login stops session fixation
    session["uid"] = row["id"]
    session["csrf"] = secrets.token_urlsafe(24)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("update users set last_login_at = now() where id = $1", row["id"])
        await audit.record(conn, row["id"], "user.login", "user", row["id"])
    return {"id": row["id"], "username": row["username"], "role": row["role"],
            "display_name": row["display_name"], "csrf_token": session["csrf"]}


@routes.post("/api/v1/session", roles=PUBLIC, csrf=False, summary="Log in (JSON)", tags=("auth",))
async def api_login(request: web.Request) -> web.Response:
    body = await read_json(request)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise BadRequest("username and password are required", fields=["username", "password"])
    user = await _login(request, username, password)
    if user is None:
        return json_response({"error": "login_failed", "message": "wrong user name or password"}, status=401)
    return json_response(user)


@routes.get("/api/v1/session", roles=ALL_ROLES, summary="Who am I, and my CSRF token", tags=("auth",))
async def api_whoami(request: web.Request) -> web.Response:
    session = await get_session(request)
    return json_response({**request["user"], "csrf_token": session["csrf"]})


@routes.delete("/api/v1/session", roles=ALL_ROLES, summary="Log out", tags=("auth",))
async def api_logout(request: web.Request) -> web.Response:
    await _leave_desk(request)
    (await get_session(request)).invalidate()
    return json_response({"status": "logged out"})


@routes.get("/login", roles=PUBLIC, summary="Login page", tags=("pages",))
@aiohttp_jinja2.template("login.html")
async def login_page(request: web.Request) -> dict:
    return {"next": _safe_next(request.query.get("next")), "error": None}


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect would let a phishing link bounce through us.
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@routes.post("/login", roles=PUBLIC, csrf=False, summary="Login form post", tags=("pages",))
async def login_form(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", ""))
    target = _safe_next(str(form.get("next", "/")))
    try:
        user = await _login(request, username, str(form.get("password", "")))
        error = None if user else "Wrong user name or password."
    except TooManyFailures as e:
        error = e.message[0].upper() + e.message[1:] + "."
    if error:
        context = {"next": target, "error": error, "username": username}
        return aiohttp_jinja2.render_template("login.html", request, context, status=401)
    raise web.HTTPFound(target)


@routes.post("/logout", roles=ALL_ROLES, summary="Logout form post", tags=("pages",))
async def logout_form(request: web.Request) -> web.StreamResponse:
    await _leave_desk(request)
    (await get_session(request)).invalidate()
    raise web.HTTPFound("/login")


async def _leave_desk(request: web.Request) -> None:
    """Logging out ends the agent's status stretch, so reports do not count them ready all night."""
    async with request.app[CTX].pool.acquire() as conn:
        await agent_status.close_open(conn, request["user"]["id"], now=dt.datetime.now(dt.UTC))
