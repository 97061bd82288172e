"""The agent desk: the page, and the JSON calls its script makes (telesales/agent_desk.py does the work)."""

from __future__ import annotations

import datetime as dt

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from crm import agent_status
from crm.dispositions import describe
from crm.fields import parse_call_id
from telesales.agent_desk import Desk, NoSeat
from telesales.app import CTX
from telesales.browser_headset import BrowserHeadset
from telesales.web import FLOOR, BadRequest, RouteTable, current_user, json_response, read_json

routes = RouteTable()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _desk(request: web.Request) -> Desk:
    return Desk(request.app[CTX], current_user(request))


def _id(body: dict, name: str, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise BadRequest(f"{name} must be a whole number id", fields=[name])
    return int(value)


@routes.get("/agent", roles=FLOOR, summary="The agent desk page", tags=("pages",))
@aiohttp_jinja2.template("agent.html")
async def agent_page(request: web.Request) -> dict:
    session = await get_session(request)
    return {
        "user": request["user"],
        "csrf_token": session["csrf"],
        "dispositions": describe(request.app[CTX].catalog),
        "pause_reasons": request.app[CTX].settings.dialer.pause_reasons,
        "payment_methods": request.app[CTX].settings.crm.payment_methods,
        "headset": request.app[CTX].settings.dialer.headset,
    }


@routes.get("/api/v1/agent/desk", roles=FLOOR, tags=("agent",),
            summary="My desk: status and seconds in it, the lead in front of me with the customer card, "
            "history, merged script and gate verdict, my current call, my callbacks due within 12 hours")
async def desk_state(request: web.Request) -> web.Response:
    return json_response(await _desk(request).state(_now()))


@routes.post("/api/v1/agent/status", roles=FLOOR, tags=("agent",),
             summary='Set my status: {"status": "ready"} or {"status": "paused", "reason": CODE}, '
             'optional "campaign_id"; on_call and wrap_up follow the calls')
async def set_status(request: web.Request) -> web.Response:
    body = await read_json(request)
    row = await _desk(request).set_status(
        str(body.get("status", "")), reason=body.get("reason") or None,
        campaign_id=_id(body, "campaign_id", required=False), now=_now(),
    )
    return json_response(dict(row.items()))


@routes.post("/api/v1/agent/leave", roles=FLOOR, tags=("agent",), summary="Leave the desk (my status stretch ends)")
async def leave(request: web.Request) -> web.Response:
    async with request.app[CTX].pool.acquire() as conn:
        await agent_status.end(conn, current_user(request)["id"], now=_now())
    return json_response({"status": None})


@routes.post("/api/v1/agent/next-lead", roles=FLOOR, tags=("agent",),
             summary='Claim the next lead of {"campaign_id"} from the hopper (due callbacks, new leads, '
             "retries; leads the compliance gates block are skipped); lead null when none may be dialled now")
async def next_lead(request: web.Request) -> web.Response:
    body = await read_json(request)
    pick = await _desk(request).next_lead(_id(body, "campaign_id"), _now())
    if pick is None:
        return json_response({"lead": None, "message": "no lead may be dialled in this campaign now"})
    return json_response({"lead": {"lead_id": pick.lead_id, "tier": pick.tier,
                                   "follow_up_id": pick.follow_up_id, "held_back": pick.held_back}})


@routes.post("/api/v1/agent/take", roles=FLOOR, tags=("agent",),
             summary='Put {"lead_id"} (e.g. one of my callbacks) in front of me; 409 while another agent has it')
async def take(request: web.Request) -> web.Response:
    body = await read_json(request)
    lead_id = _id(body, "lead_id")
    await _desk(request).take(lead_id, _now())
    return json_response({"lead_id": lead_id})


@routes.post("/api/v1/agent/skip", roles=FLOOR, tags=("agent",),
             summary='Pass on the previewed {"lead_id"} with a "reason"; it waits dialer.skip_minutes')
async def skip(request: web.Request) -> web.Response:
    body = await read_json(request)
    lead_id = _id(body, "lead_id")
    reason = body.get("reason")
    await _desk(request).skip(lead_id, reason if isinstance(reason, str) else "", _now())
    return json_response({"lead_id": lead_id, "skipped": True})


@routes.post("/api/v1/agent/dial", roles=FLOOR, tags=("agent",),
             summary='Dial the lead in front of me {"lead_id"} after the compliance gates; a blocked dial '
             'answers 409 dial_blocked with "reasons" and writes no call')
async def dial(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await _desk(request).dial(_id(body, "lead_id"), _now()), status=201)


@routes.post("/api/v1/agent/hangup", roles=FLOOR, tags=("agent",),
             summary='Hang up my call {"call_id"}; I go to wrap-up')
async def hangup(request: web.Request) -> web.Response:
    body = await read_json(request)
    call_id = parse_call_id(body.get("call_id"))
    if call_id is None:
        raise BadRequest("call_id is required", fields=["call_id"])
    await _desk(request).hangup(call_id, _now())
    return json_response({"call_id": str(call_id), "status": "wrap_up"})


@routes.post("/api/v1/agent/call", roles=FLOOR, tags=("agent",),
             summary='Control my seat call {"call_id", "action"}: hold, unhold, dtmf ("digits"), transfer '
             '(blind, to "number" within the campaign\'s allowed prefixes, or to "agent_id"\'s phone)')
async def call_control(request: web.Request) -> web.Response:
    body = await read_json(request)
    call_id = parse_call_id(body.get("call_id"))
    if call_id is None:
        raise BadRequest("call_id is required", fields=["call_id"])
    number = body.get("number")
    digits = body.get("digits")
    result = await _desk(request).call_control(
        call_id, str(body.get("action", "")),
        digits=digits if isinstance(digits, str) else None,
        number=number if isinstance(number, str) and number.strip() else None,
        agent_id=_id(body, "agent_id", required=False),
    )
    return json_response(result)


@routes.post("/api/v1/agent/line-test", roles=FLOOR, tags=("agent",),
             summary="Test my line: one short call through a free seat to dialer.line_test_uri (else my own "
             "phone); answers status (answered, busy, no_answer, rejected, failed), sip_code, seconds_to_answer")
async def line_test(request: web.Request) -> web.Response:
    return json_response(await _desk(request).line_test())


@routes.post("/api/v1/agent/wrap-up", roles=FLOOR, tags=("agent",),
             summary="Record my call's disposition (the body of POST /api/v1/dispositions); the lead is "
             "released and I am ready again, in one transaction")
async def wrap_up(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response(await _desk(request).wrap_up(body, _now()), status=201)


@routes.get("/api/v1/agent/headset", roles=FLOOR, tags=("agent",),
            summary="WebSocket: my browser headset. Binary messages both ways are 20 ms frames (16 kHz mono "
            "s16le, 640 bytes): my microphone into my answered seat call, the customer's audio back; JSON text "
            'messages from the service: {"type": "call"|"idle"|"stats"|"error"|"taken_over", ...}')
async def headset(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    if ctx.seats is None:
        raise NoSeat("no seats run in this service (telephony.seats = 0): use your own phone")
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
    await ws.prepare(request)
    await BrowserHeadset(ctx.pool, ctx.seats, current_user(request)["id"], ws).run()
    return ws
