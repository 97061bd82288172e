"""Supervisor listen / whisper / barge on a live call: the page, its audio WebSocket, the session records.

WebSocket /api/v1/supervisor/calls/{call_id}/audio (supervisors and admins; the route guard in
telesales/app.py refuses a handshake without this site's Origin, then checks the session and role;
the handler checks the team and that the call is live, all before the upgrade):

  server -> browser  binary: 641-byte records (direction byte 0 customer / 1 agent side, 20 ms of
                     16 kHz mono s16le), see telesales/listen.py
                     text: {"type": "mode", "mode": M, "session_id": N} after each mode change,
                           {"type": "ended"} when the call ends, {"type": "error", "message": ...}
  browser -> server  text: {"mode": "listen" | "whisper" | "barge"}
                     binary: 640 bytes of microphone PCM (16 kHz mono s16le); used in whisper
                     (to the agent's ear only) and barge (into the call: both parties, recorded);
                     the agent's ear is their SIP headset leg or their browser headset's page

Each mode stretch is a monitoring session: a call_monitoring row and audit rows at start and end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp_jinja2
from aiohttp import WSMsgType, web
from aiohttp_session import get_session

from crm import monitoring
from crm.fields import parse_call_id
from telephony.client import SeatUnavailable
from telephony.frames import FRAME_BYTES
from telephony.protocol import CommandError
from telesales import browser_headset
from telesales.app import CTX
from telesales.listen import Listener, Speaker, hub_for
from telesales.web import FLOOR, MANAGERS, BadRequest, RouteTable, current_user, json_response

log = logging.getLogger("telesales.monitoring")
routes = RouteTable()

INJECT_TO = {"whisper": "agent", "barge": "both"}


def _call_id(request: web.Request):
    return parse_call_id(request.match_info["call_id"])


@routes.get("/supervisor/calls/{call_id}", roles=MANAGERS, tags=("pages",),
            summary="Listen to a live call in the browser; whisper to the agent or barge in")
@aiohttp_jinja2.template("supervisor_call.html")
async def call_page(request: web.Request) -> dict:
    call_id = _call_id(request)
    async with request.app[CTX].pool.acquire() as conn:
        call = await monitoring.monitorable_call(conn, current_user(request), call_id)
    session = await get_session(request)
    return {"user": request["user"], "csrf_token": session["csrf"], "call": call,
            "live": call["ended_at"] is None and call["answered_at"] is not None}


@routes.get("/api/v1/supervisor/calls/{call_id}/monitoring", roles=MANAGERS, tags=("supervisor",),
            summary="The monitoring sessions of a call (who, mode, start, end, why it ended)")
async def call_sessions(request: web.Request) -> web.Response:
    call_id = _call_id(request)
    async with request.app[CTX].pool.acquire() as conn:
        await monitoring.monitorable_call(conn, current_user(request), call_id)
        return json_response({"call_id": str(call_id), "sessions": await monitoring.sessions_of_call(conn, call_id)})


@routes.get("/api/v1/agent/monitoring", roles=FLOOR, tags=("agent",),
            summary="Whether I am monitored now (only when monitoring.agent_sees_monitoring is on)")
async def my_monitoring(request: web.Request) -> web.Response:
    if not request.app[CTX].settings.monitoring.agent_sees_monitoring:
        return json_response({"shown": False, "sessions": []})
    async with request.app[CTX].pool.acquire() as conn:
        sessions = await monitoring.open_sessions_for_agent(conn, current_user(request)["id"])
    return json_response({"shown": True, "sessions": sessions})


@routes.get("/api/v1/supervisor/calls/{call_id}/audio", roles=MANAGERS, tags=("supervisor",),
            summary="WebSocket: the call's live audio (both parties); send a mode and microphone frames "
            "to whisper to the agent or barge in")
async def call_audio(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    call_id = _call_id(request)
    user = current_user(request)
    async with ctx.pool.acquire() as conn:
        call = await monitoring.monitorable_call(conn, user, call_id)
    monitoring.require_live(call)
    # No per-message deflate: PCM hardly compresses, and compressing every 20 ms costs CPU and latency.
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024, compress=False)
    if not ws.can_prepare(request).ok:
        raise BadRequest("this address is a WebSocket; open it with a WebSocket handshake")
    if ctx.seats is None:
        raise monitoring.CallNotLive("this service runs no seats")
    hub = hub_for(ctx.seats, ctx.settings.monitoring.listener_queue_frames)
    try:
        listener = await hub.subscribe(call["seat"], str(call_id))
    except (SeatUnavailable, CommandError) as e:
        raise monitoring.CallNotLive(f"cannot tap call {call_id}: {e}") from None
    try:
        await ws.prepare(request)
        await _Monitor(ctx, ws, call, user, listener, Speaker(hub._seat_client, call["seat"], str(call_id))).run()
    finally:
        await hub.unsubscribe(str(call_id), listener)
    return ws


class _Monitor:
    """One supervisor's WebSocket on one call: the sender task, the mode, the session rows."""

    def __init__(self, ctx, ws: web.WebSocketResponse, call, user: dict, listener: Listener, speaker: Speaker) -> None:
        self.ctx, self.ws, self.call, self.user = ctx, ws, call, user
        self.listener, self.speaker = listener, speaker
        self.mode = "listen"
        self.session_id: int | None = None
        self.bad_frames = 0

    async def run(self) -> None:
        await self._start("listen")
        sender = asyncio.create_task(self._send_audio())
        try:
            await self._receive()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await self.speaker.aclose()
            await self._end("call_ended" if self.listener.ended else "left")
            log.info("monitoring ended", extra={"call_id": str(self.call["id"]), "user_id": self.user["id"],
                                                "dropped": self.listener.dropped})

    async def _send_audio(self) -> None:
        with contextlib.suppress(ConnectionError):  # the browser went away: the receive loop ends too
            while (message := await self.listener.take()) is not None:
                await self.ws.send_bytes(message)
            await self.ws.send_str(json.dumps({"type": "ended"}))
            await self.ws.close()

    async def _receive(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self._command(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._microphone(msg.data)

    async def _command(self, text: str) -> None:
        try:
            mode = json.loads(text).get("mode")
        except (ValueError, AttributeError):
            mode = None
        if mode not in monitoring.MODES:
            await self._error(f"send {{\"mode\": M}} with M one of {', '.join(monitoring.MODES)}")
            return
        if mode != self.mode:
            if mode == "listen":
                # Closing the speaking tap drops what the seat still buffers of it: the voice stops now.
                await self.speaker.aclose()
            await self._end("mode_change")
            await self._start(mode)

    async def _microphone(self, pcm: bytes) -> None:
        to = INJECT_TO.get(self.mode)
        if to is None:
            return  # listening: a microphone still running from a moment ago is ignored
        if len(pcm) != FRAME_BYTES:
            self.bad_frames += 1
            if self.bad_frames == 1:
                await self._error(f"microphone frames are {FRAME_BYTES} bytes (20 ms of 16 kHz mono s16le)")
            return
        # An agent on the browser headset hears it through their page (the seat only feeds a SIP headset leg).
        browser_headset.speak_to(self.ctx.seats, self.call["id"], pcm)
        try:
            await self.speaker.say(pcm, to)
        except (SeatUnavailable, CommandError, ConnectionError) as e:
            await self._error(f"cannot speak into the call: {e}")

    async def _start(self, mode: str) -> None:
        async with self.ctx.pool.acquire() as conn:
            row = await monitoring.start_session(conn, self.call["id"], self.user["id"], mode)
        self.mode, self.session_id = mode, row["id"]
        log.info("monitoring", extra={"call_id": str(self.call["id"]), "user_id": self.user["id"], "mode": mode})
        await self.ws.send_str(json.dumps({"type": "mode", "mode": mode, "session_id": row["id"]}))

    async def _end(self, reason: str) -> None:
        if self.session_id is None:
            return
        # Shielded: a cancelled handler (the browser went away) must still close its session row.
        async def close() -> None:
            async with self.ctx.pool.acquire() as conn:
                await monitoring.end_session(conn, self.session_id, reason)
        await asyncio.shield(close())
        self.session_id = None

    async def _error(self, message: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(json.dumps({"type": "error", "message": message}))
