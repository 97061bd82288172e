"""Predictive dialing, live: more lines than ready agents, and what happens when they answer.

One task owned by the server paces every active campaign with dialing_mode =
'predictive'. Each round (dialer.predictive_interval_seconds) it counts the
campaign's ready agents (less the answered lines about to take one) and the
lines still ringing, asks the campaign's
`AdaptivePacer` (telesales/pacing.py) how many lines to add, and dials that many
leads from the hopper, one per free seat. The pacer's connect rate and target are
recomputed every dialer.recompute_seconds from the campaign's last 30 days; while
that 30-day abandon rate is over dialer.abandon_cap the campaign dials no more
lines than it has free agents (progressive) until the rate is back under.

How an answered line reaches an agent: lines are dialled from a pool of seats
(one customer call per seat), as the desk's own dials are. On the answer (the
seat's CallAnswered, followed through SeatService.listeners) the longest-ready
agent of the campaign gets the call: the call row and the lead are put in their
name and their status becomes on_call, so the desk shows the call and the
customer card at its next poll, and the seat calls the agent's phone (users.sip_uri)
as its headset leg, bridged to the customer (recorded as any call). With no agent
free, the seat plays the recorded abandon message (espeak-ng, cached) at once and
hangs up after it, and the call is recorded DROP; the compliance gate
"recently_abandoned" keeps the number from being dialled again for 72 hours.
Lines that are not answered get NA or B, as an agent would have recorded.

The dialer claims leads in the hopper as a system user, 'predictive-dialer'
(inactive: it cannot log in), holding one claim per line out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from crm import agent_status, hopper
from crm.dispositions import record_disposition
from crm.errors import UserError
from telephony import events as ev
from telephony.client import SeatUnavailable
from telephony.protocol import CommandError
from telesales import claims
from telesales.app import AppContext
from telesales.dial_routes import dial_uri_for
from telesales.pacing import AdaptivePacer
from telesales.prompts import PromptError, spoken_prompt

log = logging.getLogger("telesales.predictive")

DIALER_USERNAME = "predictive-dialer"
PERIOD = dt.timedelta(days=30)  # the span the abandon cap applies to
SOON_FREE_LEAD_S = 8.0  # about the shortest ring before an answer: an agent free by then can take it
NOT_ANSWERED = {"busy": "B"}  # hang-up cause of an unanswered line -> its disposition; others NA

_CAMPAIGNS = "select id from campaigns where active and dialing_mode = 'predictive' order by id"

# Ready in the campaign with no call left to wrap up; longest ready first.
_READY_AGENTS = """
select u.id, u.sip_uri from agent_status_log s
join users u on u.id = s.user_id and u.active
where s.ended_at is null and s.status = 'ready' and s.campaign_id = $1
  and not exists (select 1 from calls k where k.agent_id = u.id and k.disposition is null
                  and not exists (select 1 from call_dispositions d where d.call_id = k.id))
order by s.started_at, u.id
"""

# The campaign's dialer lines still up with no agent: ringing, or answered and about to get an agent
# (or the abandon message): those take a free agent, so the pacer must not count that agent again.
_LINES = """
select count(*) filter (where answered_at is null) as ringing,
       count(*) filter (where answered_at is not null) as answered
from calls
where campaign_id = $1 and direction = 'outbound' and agent_id is null and seat is not null
  and ended_at is null and disposition is null and created_at > $2
"""

# Ages of the campaign's open wrap-ups, and its typical (median) wrap-up over the last day (10 or more).
_WRAP_UPS = """
select array(select extract(epoch from $2 - started_at)::float8 from agent_status_log
             where campaign_id = $1 and status = 'wrap_up' and ended_at is null) as ages,
       (select case when count(*) >= 10 then percentile_cont(0.5) within group
                    (order by extract(epoch from ended_at - started_at)::float8) end
        from agent_status_log where campaign_id = $1 and status = 'wrap_up' and ended_at > $2 - interval '1 day')
       as typical
"""

_TOTALS = """
select count(*) as dials, count(answered_at) as answered,
       count(*) filter (where disposition = 'DROP') as abandoned
from calls where campaign_id = $1 and direction = 'outbound' and created_at > $2
"""


@dataclass(frozen=True)
class Round:
    """One pacing decision, kept for the logs and the tests: the dial level as it was applied."""

    campaign_id: int
    free_agents: int
    ringing: int
    soon_free: int
    wanted: int
    placed: int


@dataclass
class CampaignPace:
    pacer: AdaptivePacer
    over_cap: bool = False  # the 30-day abandon rate is above the cap


def soon_free_agents(wrap_up_ages: list[float], typical_wrap_up: float | None,
                     lead_seconds: float = SOON_FREE_LEAD_S) -> int:
    """Agents in wrap-up likely free before a line dialled now is answered: those whose wrap-up has
    lasted at least the campaign's typical one less the lead time. No typical wrap-up yet: none."""
    if typical_wrap_up is None:
        return 0
    return sum(1 for age in wrap_up_ages if age >= typical_wrap_up - lead_seconds)


def wanted_lines(pace: CampaignPace, free: int, ringing: int, *, can_abandon: bool, soon_free: int = 0) -> int:
    """New lines for a campaign now: the pacer's dial level; one line per free agent (progressive) while
    the 30-day abandon rate is over the cap, or when no abandon message could be made. soon_free: agents
    likely free within a ring's time (soon_free_agents)."""
    if pace.over_cap or not can_abandon:
        return max(0, free - ringing)
    return pace.pacer.lines(free, ringing, soon_free)


class PredictiveDialer:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        d = ctx.settings.dialer
        self.interval = d.predictive_interval_seconds
        self.paces: dict[int, CampaignPace] = {}
        self.message: Path | None = None  # the abandon message; None: cannot abandon politely, so no overdial
        self.dialer_id: int | None = None
        # The task following each call's latest event: answers are handled side by side (five answers
        # at once must not wait in line for the message), one call's events in order.
        self._following: dict[str, asyncio.Task] = {}
        # call id -> seat whose headset leg this dialer connected (its seat claim waits for the leg to go)
        self._headsets: dict[str, str] = {}
        self._tasks: list[asyncio.Task] = []
        self.rounds: collections.deque[Round] = collections.deque(maxlen=200)  # latest rounds that wanted lines

    @property
    def enabled(self) -> bool:
        s = self.ctx.settings
        return self.ctx.seats is not None and s.telephony.seats > 0 and bool(s.dialer.dial_uri or s.dialer.dial_routes)

    # --- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            log.info("predictive dialer off: no seats or no dialer.dial_uri / dial_routes")
            return
        await self.prepare()
        self.ctx.seats.listeners.append(self._on_event)
        self._tasks = [asyncio.create_task(self._pace_loop(), name="predictive-pacing")]

    async def prepare(self) -> None:
        """The dialer's hopper user and the abandon message, made before the first dial."""
        async with self.ctx.pool.acquire() as conn:
            self.dialer_id = await conn.fetchval(
                """insert into users (username, display_name, role, password_hash, active)
                   values ($1, 'Predictive dialer', 'agent', '!', false)
                   on conflict (lower(username)) do update set active = false returning id""",
                DIALER_USERNAME)
        self.message = await self._abandon_message()

    async def _abandon_message(self) -> Path | None:
        d = self.ctx.settings.dialer
        if d.abandon_message_wav:
            return Path(d.abandon_message_wav)
        try:
            return await spoken_prompt(Path(self.ctx.settings.data_dir) / "prompts", "abandon", d.abandon_message)
        except PromptError as e:
            log.error("no abandon message (%s): predictive campaigns dial one line per free agent", e)
            return None

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.ctx.seats.listeners.remove(self._on_event)
        for task in [*self._tasks, *self._following.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._following.clear()

    async def _pace_loop(self) -> None:
        while True:
            try:
                await self.tick(dt.datetime.now(dt.UTC))
            except Exception:  # noqa: BLE001 - one bad round must not stop the dialer
                log.exception("predictive dialer round failed")
            await asyncio.sleep(self.interval)

    def _on_event(self, event: ev.Event) -> None:
        if not isinstance(event, (ev.CallAnswered, ev.CallEnded)):
            return
        call_id = event.call_id
        task = asyncio.create_task(self._follow(self._following.get(call_id), event))
        self._following[call_id] = task
        task.add_done_callback(lambda t: self._following.pop(call_id, None) if self._following.get(call_id) is t
                               else None)

    async def _follow(self, before: asyncio.Task | None, event: ev.Event) -> None:
        if before is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await before  # its failure is logged there
        try:
            await self.handle(event, dt.datetime.now(dt.UTC))
        except Exception:  # noqa: BLE001 - the next answer must still be handled
            log.exception("predictive dialer could not handle %s", type(event).__name__,
                          extra={"call_id": event.call_id})

    # --- pacing --------------------------------------------------------------------------

    async def tick(self, now: dt.datetime) -> list[uuid.UUID]:
        """One round over the predictive campaigns; returns the calls placed."""
        placed: list[uuid.UUID] = []
        async with self.ctx.pool.acquire() as conn:
            campaigns = [r["id"] for r in await conn.fetch(_CAMPAIGNS)]
        for campaign_id in campaigns:
            placed += await self._pace(campaign_id, now)
        return placed

    def _campaign_pace(self, campaign_id: int) -> CampaignPace:
        if campaign_id not in self.paces:
            d = self.ctx.settings.dialer
            self.paces[campaign_id] = CampaignPace(AdaptivePacer(cap=d.abandon_cap,
                                                                 recompute_seconds=d.recompute_seconds))
        return self.paces[campaign_id]

    async def _pace(self, campaign_id: int, now: dt.datetime) -> list[uuid.UUID]:
        pace = self._campaign_pace(campaign_id)
        async with self.ctx.pool.acquire() as conn:
            lines = await conn.fetchrow(_LINES, campaign_id, now - dt.timedelta(hours=1))
            free = max(0, len(await conn.fetch(_READY_AGENTS, campaign_id)) - lines["answered"])
            ringing = lines["ringing"]
            if pace.pacer.due(time.monotonic()):
                totals = await conn.fetchrow(_TOTALS, campaign_id, now - PERIOD)
                pace.pacer.recompute(time.monotonic(), **dict(totals.items()))
                rate = totals["abandoned"] / totals["answered"] if totals["answered"] else 0.0
                pace.over_cap = rate > pace.pacer.cap
                log.info("pacing recomputed", extra={
                    "campaign_id": campaign_id, "connect_rate": round(pace.pacer.connect_rate, 3),
                    "abandon_rate_30d": round(rate, 4), "target": round(pace.pacer.target, 4),
                    "over_cap": pace.over_cap})
            wraps = await conn.fetchrow(_WRAP_UPS, campaign_id, now)
            soon = soon_free_agents(list(wraps["ages"]), wraps["typical"])
            wanted = wanted_lines(pace, free, ringing, can_abandon=self.message is not None, soon_free=soon)
            if wanted <= 0:
                return []
            placed = []
            for _ in range(wanted):
                call_id = await self._dial_one(conn, campaign_id, now)
                if call_id is None:
                    break
                placed.append(call_id)
        self.rounds.append(Round(campaign_id, free, ringing, soon, wanted, len(placed)))
        if placed:
            log.info("predictive lines dialled", extra={"campaign_id": campaign_id, "lines": len(placed),
                                                        "free_agents": free, "ringing": ringing})
        return placed

    async def _dial_one(self, conn: asyncpg.Connection, campaign_id: int, now: dt.datetime) -> uuid.UUID | None:
        """The next lead through the hopper (gates included) on a free seat; None when no seat is free or
        nothing may be dialled. The seat stays claimed until the line and the agent's phone leg are gone."""
        try:
            seat = self.ctx.seats.claims.claim(claims.PREDICTIVE, keep_after_end=True)
        except claims.SeatBusy:
            return None
        try:
            call_id = await self._dial_lead(conn, campaign_id, seat, now)
        finally:
            if seat.call_id is None:
                self.ctx.seats.claims.release(seat)
        return call_id

    async def _dial_lead(self, conn: asyncpg.Connection, campaign_id: int, seat: claims.SeatClaim,
                         now: dt.datetime) -> uuid.UUID | None:
        d = self.ctx.settings.dialer
        pick = await hopper.next_lead(conn, campaign_id=campaign_id, agent_id=self.dialer_id, now=now,
                                      rules=self._rules(), exclusive=False)
        if pick is None:
            return None
        phone = await conn.fetchval("select phone from leads where id = $1", pick.lead_id)
        uri = dial_uri_for(d, phone)
        try:
            if uri is None:
                raise CommandError(f"no dialer.dial_routes entry or dial_uri reaches {phone}")
            return await self.ctx.seats.dial(seat.seat, uri, lead_id=pick.lead_id, to_number=phone,
                                             ring_timeout=d.predictive_ring_seconds, claim=seat)
        except (CommandError, SeatUnavailable) as e:
            log.warning("predictive dial failed: %s", e, extra={"lead_id": pick.lead_id, "seat": seat.seat})
            self.ctx.seats.claims.release(seat)
            await hopper.release(conn, pick.lead_id, self.dialer_id)
            return None

    def _rules(self) -> hopper.HopperRules:
        s = self.ctx.settings
        return hopper.HopperRules(default_region=s.crm.default_region, default_time_zone=s.crm.default_time_zone,
                                  claim_minutes=s.dialer.claim_minutes,
                                  blocked_recheck_minutes=s.dialer.blocked_recheck_minutes)

    # --- answers and ends --------------------------------------------------------------------

    async def handle(self, event: ev.Event, now: dt.datetime) -> str | None:
        """What became of one of our lines: 'connected', 'abandoned', a code for an unanswered line, or None."""
        async with self.ctx.pool.acquire() as conn:
            call = await conn.fetchrow(
                """select k.*, c.dialing_mode from calls k join campaigns c on c.id = k.campaign_id
                   where k.id = $1::uuid""", event.call_id)
            if isinstance(event, ev.CallEnded):
                await self._ended(conn, call, now)
                return None
            if not self._ours(call):
                return None
            if call["ended_at"] is not None:  # the customer hung up before we could act
                await self._dispose(conn, call, "HU", now)
                return "HU"
            agent = await self._assign(conn, call, now)
        if agent is not None:
            await self._connect_headset(call, agent)
            return "connected"
        await self._abandon(call, now)
        return "abandoned"

    @staticmethod
    def _ours(call: asyncpg.Record | None) -> bool:
        return (call is not None and call["dialing_mode"] == "predictive" and call["direction"] == "outbound"
                and call["agent_id"] is None and call["seat"] is not None and call["disposition"] is None)

    async def _assign(self, conn: asyncpg.Connection, call: asyncpg.Record, now: dt.datetime) -> asyncpg.Record | None:
        """The longest-ready agent takes the call, in one transaction; None when nobody is free."""
        async with conn.transaction():
            for agent in await conn.fetch(_READY_AGENTS, call["campaign_id"]):
                try:  # the agent's lock (a pause, a manual dial or the inbound queue waits) and a fresh check
                    status = await claims.claim_agent(conn, agent["id"], claims.PREDICTIVE)
                except claims.AgentBusy as e:
                    log.info("predictive call skips an agent: %s", e.message, extra={"call_id": str(call["id"])})
                    continue
                if status["campaign_id"] != call["campaign_id"]:
                    continue  # moved to another campaign meanwhile
                await conn.execute("update calls set agent_id = $2 where id = $1", call["id"], agent["id"])
                await conn.execute("update leads set claimed_by = $2, claim_expires_at = $3 where id = $1",
                                   call["lead_id"], agent["id"],
                                   now + dt.timedelta(minutes=self.ctx.settings.dialer.claim_minutes))
                await agent_status.set_status(conn, agent["id"], "on_call", campaign_id=call["campaign_id"], now=now)
                log.info("predictive call connected", extra={"call_id": str(call["id"]), "agent_id": agent["id"],
                                                             "seat": call["seat"]})
                return agent
        return None

    async def _connect_headset(self, call: asyncpg.Record, agent: asyncpg.Record) -> None:
        """The agent's phone joins the call on its seat (without a phone, the browser headset would)."""
        if not agent["sip_uri"]:
            return
        try:
            await self.ctx.seats.manager.seat(call["seat"]).headset_connect(agent["sip_uri"])
            self._headsets[str(call["id"])] = call["seat"]
        except (CommandError, SeatUnavailable) as e:
            log.warning("agent's phone not connected: %s", e, extra={"call_id": str(call["id"]),
                                                                     "agent_id": agent["id"]})

    async def _abandon(self, call: asyncpg.Record, now: dt.datetime) -> None:
        """The message first (the 2 s promise), then the DROP written."""
        seat = self.ctx.seats.manager.seat(call["seat"])
        try:
            if self.message is not None:
                await seat.abandon(call["id"], str(self.message))
            else:
                await seat.hangup(call["id"])
        except (CommandError, SeatUnavailable) as e:
            log.warning("abandon message not played: %s", e, extra={"call_id": str(call["id"])})
        async with self.ctx.pool.acquire() as conn:
            await self._dispose(conn, call, "DROP", now)
        log.info("predictive call abandoned", extra={"call_id": str(call["id"]), "seat": call["seat"]})

    async def _ended(self, conn: asyncpg.Connection, call: asyncpg.Record | None, now: dt.datetime) -> None:
        if call is None:
            return
        seat = self._headsets.pop(str(call["id"]), None)
        if seat is not None:  # the customer call is over: the agent's phone leg goes with it
            with contextlib.suppress(CommandError, SeatUnavailable):
                await self.ctx.seats.manager.seat(seat).headset_disconnect()
        held = self.ctx.seats.claims.holder(call["seat"]) if call["seat"] else None
        if held is not None and held.call_id == str(call["id"]):
            self.ctx.seats.claims.release(held)  # the line and its phone leg are gone: the seat is free
        if self._ours(call) and call["answered_at"] is None:
            await self._dispose(conn, call, NOT_ANSWERED.get(call["hangup_cause"], "NA"), now)

    async def _dispose(self, conn: asyncpg.Connection, call: asyncpg.Record, code: str, now: dt.datetime) -> None:
        """The disposition the dialer records itself (no agent had the call), and the hopper claim let go."""
        crm = self.ctx.settings.crm
        try:
            await record_disposition(
                conn, self.ctx.catalog, {"code": code, "call_id": str(call["id"])}, agent_id=None, now=now,
                payment_methods=crm.payment_methods, departments=crm.departments,
                default_currency=crm.default_currency, ack_hours=crm.complaint_ack_hours,
                resolve_hours=crm.complaint_resolve_hours)
        except UserError as e:  # already dispositioned (a replayed event): nothing to add
            log.info("no %s recorded: %s", code, e.message, extra={"call_id": str(call["id"])})
        if call["lead_id"] is not None:
            await hopper.release(conn, call["lead_id"], self.dialer_id)
