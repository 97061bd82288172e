"""Live transcript WebSockets: a call's audio out to a QA worker, its transcript out to supervisors.

The service never transcribes: /api/v1/qa/live/{call_id}/audio relays the
seat's media tap to a QA worker (worker token, or an admin's session), one
binary message per 20 ms frame: a direction byte (0 agent, 1 customer) and
640 bytes of 16 kHz mono s16. The worker's segments and alerts come back
through the store (crm.live, channel live_events) and
/api/v1/live/calls/{call_id}/transcript streams them to supervisors and
admins: the call's segments and alerts so far, then new ones as they come.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from crm import calls
from crm import live as live_store
from crm.errors import Conflict
from crm.fields import parse_call_id
from crm.floor import supervised_teams
from crm.monitoring import NotYourTeam
from telephony.client import SeatUnavailable
from telephony.protocol import CommandError
from telesales.app import CTX
from telesales.live_hub import hub_for
from telesales.web import ADMIN, MANAGERS, RouteTable, current_user, dumps

log = logging.getLogger("telesales.live")
routes = RouteTable()

DIRECTION_BYTE = {"agent": b"\x00", "customer": b"\x01"}


class NotLive(Conflict):
    error_id = "call_not_live"


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so a close from its side is seen."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break


@routes.get(
    "/api/v1/qa/live/{call_id}/audio",
    roles=ADMIN,
    worker_token=True,
    tags=("qa",),
    summary="WebSocket: a live call's audio for a QA worker's live transcript (Authorization: Bearer <worker "
    "token>). Binary messages: a direction byte (0 agent, 1 customer) then 20 ms of 16 kHz mono s16. 409 when "
    "the call is not live on a seat of this service",
)
async def live_audio(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    call_id = parse_call_id(request.match_info["call_id"])
    async with ctx.pool.acquire() as conn:
        call = await calls.get_call(conn, call_id)
    if call["ended_at"] is not None or call["answered_at"] is None or not call["seat"]:
        raise NotLive(f"call {call_id} is not live on a seat")
    if ctx.seats is None:
        raise NotLive("this service runs no seats")
    try:
        tap = await ctx.seats.manager.seat(call["seat"]).open_tap(call_id)
    except (SeatUnavailable, CommandError) as e:
        raise NotLive(f"call {call_id}: no audio from seat {call['seat']}: {e}") from None
    ws = web.WebSocketResponse(heartbeat=10, max_msg_size=4096)
    try:
        await ws.prepare(request)
        reader = asyncio.create_task(_drain(ws))
        async for frame in tap:
            if ws.closed:
                break
            await ws.send_bytes(DIRECTION_BYTE[frame.direction] + frame.pcm)
        reader.cancel()
    except (ConnectionResetError, ConnectionError):
        pass  # the worker went away; its lease lapses and another takes the call
    finally:
        await tap.aclose()
        if tap.dropped:
            log.warning("live audio frames dropped", extra={"call_id": str(call_id), "dropped": tap.dropped})
        await ws.close()
    return ws


async def _may_watch(conn, user: dict, call) -> None:
    """The floor's one team rule (crm.floor.supervised_teams), as on the wallboard and the listen page."""
    teams = await supervised_teams(conn, user)
    if teams is None:
        return
    team = await conn.fetchval("select team_id from users where id = $1", call["agent_id"]) \
        if call["agent_id"] is not None else None
    if team not in teams:
        raise NotYourTeam("this call's agent is not in a team you supervise")


@routes.get(
    "/api/v1/live/calls/{call_id}/transcript",
    roles=MANAGERS,
    tags=("live",),
    summary="WebSocket: a call's live transcript and alerts as JSON text messages ({type: transcript | alert "
    "| dropped, ...}): what was said so far, then each new segment within seconds of its end",
)
async def live_transcript(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    call_id = parse_call_id(request.match_info["call_id"])
    async with ctx.pool.acquire() as conn:
        call = await calls.get_call(conn, call_id)
        await _may_watch(conn, current_user(request), call)
    hub = hub_for(request.app, ctx.pool)
    sub = await hub.subscribe(str(call_id))  # before the backlog is read, so nothing falls between the two
    ws = web.WebSocketResponse(heartbeat=20)
    reader = None
    try:
        await ws.prepare(request)
        reader = asyncio.create_task(_drain(ws))
        async with ctx.pool.acquire() as conn:
            backlog = await live_store.segments(conn, call_id) + await live_store.alerts(conn, call_id)
        sent = {(e["type"], e["id"]) for e in backlog}
        for event in sorted(backlog, key=lambda e: e["at"]):
            await ws.send_str(dumps(event))
        await _stream(ws, sub, sent, reader)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        if reader is not None:
            reader.cancel()
        await hub.unsubscribe(sub)
        await ws.close()
    return ws


async def _stream(ws: web.WebSocketResponse, sub, sent: set, reader: asyncio.Task) -> None:
    dropped = 0
    while not ws.closed and not reader.done():
        getter = asyncio.ensure_future(sub.queue.get())
        try:
            await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            got = getter.done()
            if not got:
                getter.cancel()
        if not got:
            return  # the client closed
        event = getter.result()
        if (event.get("type"), event.get("id")) in sent:
            continue  # in the backlog already
        if sub.dropped != dropped:
            dropped = sub.dropped
            await ws.send_str(dumps({"type": "dropped", "count": dropped}))
        await ws.send_str(dumps(event))
