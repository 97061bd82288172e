"""The supervisor wallboard: the page, and the WebSocket that pushes the floor to it.

Access (issue #7 point 4): supervisors and admins only, from the route table;
the route guard (telesales/app.py) refuses a handshake without this site's
Origin before it looks at the session. Which agents a supervisor sees is
crm.floor.supervised_teams: their reviewer_teams assignments plus their own
team, everything when they have neither; admins see everything. The scope is
fixed at the handshake (a change of assignment shows on the next connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp_jinja2
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp_session import get_session

from crm import floor
from telesales.app import CTX
from telesales.floor_feed import FLOOR, FloorFeed
from telesales.floor_hub import RESYNC, Subscription
from telesales.web import MANAGERS, BadRequest, RouteTable, current_user, dumps

log = logging.getLogger("telesales.wallboard")
routes = RouteTable()

WS_PATH = "/api/v1/supervisor/wallboard/ws"
RECHECK_SECONDS = 30.0


@routes.get("/supervisor/wallboard", roles=MANAGERS, tags=("pages",),
            summary="The supervisor wallboard: agents, calls, queues, today's counts, abandon rates, alerts, "
            "kept current over a WebSocket")
@aiohttp_jinja2.template("wallboard.html")
async def wallboard_page(request: web.Request) -> dict:
    session = await get_session(request)
    settings = request.app[CTX].settings
    return {"user": request["user"], "csrf_token": session["csrf"], "ws_path": WS_PATH,
            "abandon_cap": settings.wallboard.abandon_cap, "time_zone": settings.reports.time_zone}


@routes.get(WS_PATH, roles=MANAGERS, tags=("supervisor",),
            summary="WebSocket of the wallboard: a snapshot, then agent, agent_gone, campaign, queue and "
            "alert events (JSON text frames); needs this site's Origin")
async def wallboard_socket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        raise BadRequest("this address is a WebSocket; the wallboard page is /supervisor/wallboard")
    feed: FloorFeed = request.app[FLOOR]
    user = current_user(request)
    async with request.app[CTX].pool.acquire() as conn:
        teams = await floor.supervised_teams(conn, user)
    await feed.ensure_started()
    # Subscribed before the snapshot is read, so no change falls between the two.
    sub = feed.hub.subscribe(teams)
    try:
        await ws.prepare(request)
        log.info("wallboard connected", extra={"user_id": user["id"], "teams": teams})
        tasks = [asyncio.create_task(_pump(ws, feed, sub, teams, request.app[CTX].settings.wallboard)),
                 asyncio.create_task(_still_allowed(ws, request.app[CTX].pool, user["id"], RECHECK_SECONDS))]
        try:
            async for msg in ws:  # the page sends nothing; this loop notices the close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        feed.hub.unsubscribe(sub)
        log.info("wallboard disconnected", extra={"user_id": user["id"], "dropped": sub.dropped,
                                                  "resyncs": sub.resyncs})
    return ws


async def _pump(ws: web.WebSocketResponse, feed: FloorFeed, sub: Subscription, teams, wb) -> None:
    """Send the snapshot, then the subscriber's queue; a send that blocks too long closes the socket."""
    try:
        await _send(ws, dumps(await feed.snapshot(sub, teams)), wb.send_timeout_seconds)
        while True:
            item = await sub.queue.get()
            text = dumps(await feed.snapshot(sub, teams)) if item == RESYNC else item
            await _send(ws, text, wb.send_timeout_seconds)
    except (TimeoutError, ConnectionError):
        log.info("wallboard browser too slow or gone; closing")
        await ws.close()


async def _still_allowed(ws: web.WebSocketResponse, pool, user_id: int, every: float) -> None:
    """A board stays open for hours: a user deactivated or moved out of supervisor/admin since the
    handshake is disconnected within `every` seconds (a server-side check, not browser polling)."""
    while True:
        await asyncio.sleep(every)
        role = await pool.fetchval("select role from users where id = $1 and active", user_id)
        if role not in MANAGERS:
            log.info("wallboard closed: user no longer allowed", extra={"user_id": user_id})
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"no longer allowed")
            return


async def _send(ws: web.WebSocketResponse, text: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        await ws.send_str(text)
