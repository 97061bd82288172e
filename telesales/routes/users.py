"""Users API: admins create users; supervisors see who is on the floor."""

from __future__ import annotations

from aiohttp import web

from crm import audit
from crm import users as user_store
from telesales.app import CTX
from telesales.passwords import generate_password, hash_password
from telesales.web import ADMIN, MANAGERS, RouteTable, UserError, current_user, json_response, read_json

routes = RouteTable()


@routes.get("/api/v1/users", roles=MANAGERS, summary="List users", tags=("users",))
async def list_users(request: web.Request) -> web.Response:
    rows = await user_store.list_users(request.app[CTX].pool)
    return json_response([dict(r.items()) for r in rows])


@routes.post("/api/v1/users", roles=ADMIN, summary="Create a user (password generated when absent)",
             tags=("users",))
async def create_user(request: web.Request) -> web.Response:
    body = await read_json(request)
    password = body.get("password") or generate_password()
    try:
        password_hash = hash_password(str(password))
    except ValueError as e:
        raise UserError(str(e), fields=["password"]) from None
    async with request.app[CTX].pool.acquire() as conn, conn.transaction():
        user = await user_store.create_user(
            conn, str(body.get("username", "")), str(body.get("role", "")), password_hash,
            display_name=str(body.get("display_name", "")), team=body.get("team"),
            sip_uri=body.get("sip_uri"), skills=body.get("skills") or [],
        )
        await audit.record(conn, current_user(request)["id"], "user.create", "user", user["id"])
    result = dict(user.items())
    if not body.get("password"):
        result["password"] = password  # shown once
    return json_response(result, status=201)
