"""Helpers for the wallboard tests: logged-in HTTP sessions of several users against one real app."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from auth_helpers import password_hash

from crm.users import create_user
from telesales.routes.wallboard import WS_PATH

PASSWORD = "correct horse"


def base_url(client) -> str:
    return str(client.make_url("")).rstrip("/")


async def make_user(app_ctx, username: str, role: str, team: str | None = None) -> dict:
    async with app_ctx.pool.acquire() as c:
        row = await create_user(c, username, role, password_hash(PASSWORD), team=team)
    return dict(row.items())


async def logged_in(client, username: str) -> tuple[aiohttp.ClientSession, str]:
    """A fresh HTTP session (own cookie jar) logged in as `username`, and its CSRF token."""
    # unsafe=True: keep cookies of an IP address (the test server is 127.0.0.1)
    session = aiohttp.ClientSession(base_url=base_url(client), cookie_jar=aiohttp.CookieJar(unsafe=True))
    resp = await session.post("/api/v1/session", json={"username": username, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return session, (await resp.json())["csrf_token"]


async def open_board(session: aiohttp.ClientSession, client, origin: str | None = "same"):
    headers = {} if origin is None else {"Origin": base_url(client) if origin == "same" else origin}
    return await session.ws_connect(WS_PATH, headers=headers)


async def next_event(ws, want, timeout: float = 15.0) -> tuple[dict, float]:
    """The first event for which want(event) is true, and the time.time() it arrived."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive(), max(0.01, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        if want(event):
            return event, time.time()


def agent_is(agent_id: int, **fields):
    def want(event: dict) -> bool:
        if event["type"] != "agent" or event["agent"]["id"] != agent_id:
            return False
        return all(event["agent"].get(k) == v for k, v in fields.items())
    return want
