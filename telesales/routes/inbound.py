"""The inbound queue seen from the pages: the agent's screen pop and the queues' sizes."""

from __future__ import annotations

import time

from aiohttp import web

from crm import customers as customer_store
from telesales.app import CTX
from telesales.web import FLOOR, RouteTable, current_user, json_response

routes = RouteTable()

# The agent's inbound call still owed a wrap-up (open, or ended without a disposition), newest first.
_MY_INBOUND = """
select id, seat, queue, from_number, to_number, customer_id, queued_at, queue_left_at, answered_at, ended_at
from calls
where agent_id = $1 and direction = 'inbound' and disposition is null
  and not exists (select 1 from call_dispositions d where d.call_id = calls.id)
order by created_at desc limit 1
"""


@routes.get("/api/v1/agent/screen-pop", roles=FLOOR, tags=("agent",),
            summary="My inbound call (queue, caller number, seconds waited) and the caller's customer file "
            "matched by number; call null when I have none")
async def screen_pop(request: web.Request) -> web.Response:
    async with request.app[CTX].pool.acquire() as conn:
        call = await conn.fetchrow(_MY_INBOUND, current_user(request)["id"])
        customer = None
        if call is not None and call["customer_id"] is not None:
            customer = await customer_store.customer_file(conn, call["customer_id"], interactions_limit=20)
    if call is None:
        return json_response({"call": None, "customer": None})
    waited = (call["queue_left_at"] - call["queued_at"]).total_seconds() if call["queue_left_at"] else None
    return json_response({"call": {**dict(call.items()), "waited_seconds": waited}, "customer": customer})


@routes.get("/api/v1/inbound/queues", roles=FLOOR, tags=("agent",),
            summary="Each inbound queue: callers waiting and the longest wait in seconds")
async def queues(request: web.Request) -> web.Response:
    inbound = request.app[CTX].inbound
    return json_response({"queues": {} if inbound is None else inbound.snapshot(),
                          "at": time.time()})
