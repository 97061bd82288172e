"""Progressive dialing: an agent who is ready in a progressive campaign gets the next lead dialled at once.

One task owned by the server looks every `interval` seconds for ready agents of
progressive campaigns with nothing in front of them, and for each takes the next
lead from the hopper and dials it through the desk (so the compliance gates run
exactly as on a click). Preview campaigns are left to the agent's clicks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from crm.errors import UserError
from telesales.agent_desk import Desk
from telesales.app import AppContext

log = logging.getLogger("telesales.progressive")

_IDLE_READY = """
select u.id, u.username, u.display_name, u.role, s.campaign_id
from agent_status_log s
join users u on u.id = s.user_id and u.active
join campaigns c on c.id = s.campaign_id and c.active and c.dialing_mode = 'progressive'
where s.ended_at is null and s.status = 'ready'
  and not exists (select 1 from leads l where l.claimed_by = u.id and l.claim_expires_at > $1)
  and not exists (select 1 from calls k where k.agent_id = u.id and k.disposition is null
                  and not exists (select 1 from call_dispositions d where d.call_id = k.id))
order by s.started_at
"""


class ProgressiveDialer:
    def __init__(self, ctx: AppContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self._task: asyncio.Task | None = None

    async def tick(self, now: dt.datetime) -> list[dict]:
        """One round: the longest-ready agent first; returns the dials placed."""
        async with self.ctx.pool.acquire() as conn:
            agents = await conn.fetch(_IDLE_READY, now)
        placed = []
        inbound = self.ctx.inbound
        for agent in agents:
            if inbound is not None and await inbound.wants_agent(agent["id"]):
                continue  # inbound takes precedence: a caller waits whom this agent can take
            desk = Desk(self.ctx, dict(agent.items()))
            try:
                pick = await desk.next_lead(agent["campaign_id"], now)
                if pick is not None:
                    placed.append(await desk.dial(pick.lead_id, now))
            except UserError as e:
                # The agent paused or went on a call between the query and the dial: next round.
                log.info("progressive dial skipped: %s", e.message, extra={"agent_id": agent["id"]})
        return placed

    async def _run(self) -> None:
        while True:
            try:
                await self.tick(dt.datetime.now(dt.UTC))
            except Exception:  # noqa: BLE001 - one bad round must not stop the dialer
                log.exception("progressive dialer round failed")
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="progressive-dialer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
