"""The agent desk: what one agent's page does, as service functions the routes call.

Status (ready / paused / on a call / wrap-up), the lead in front of the agent
(claimed from the hopper), dialling it through a seat after the compliance gates,
hanging up, and the wrap-up that returns the agent to ready. State lives in the
store (agent_status_log, lead claims, call rows), so a reload or a second tab
shows the same desk.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass

import asyncpg

from crm import agent_status, audit, compliance, follow_ups, hopper
from crm import calls as call_store
from crm import customers as customer_store
from crm.dispositions import record_disposition
from crm.errors import Conflict, IllegalTransition, NotFound, UserError
from crm.fields import parse_call_id
from telephony.client import SeatUnavailable
from telephony.protocol import CommandError
from telesales import claims
from telesales.app import AppContext
from telesales.claims import SeatClaim
from telesales.dial_routes import dial_uri_for

log = logging.getLogger("telesales.desk")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
CALLBACKS_AHEAD = dt.timedelta(hours=12)  # "my callbacks" shows what is due within this
CALL_ACTIONS = ("hold", "unhold", "dtmf", "transfer")
_DTMF = re.compile(r"[0-9*#A-D]{1,32}")
WRAP_UP_TIMEOUT = "wrap_up_timeout"  # the pause reason of an agent whose wrap-up ran too long
# Hang-up causes (telephony.calls) -> line test status, as `telesales call` reports them.
LINE_TEST_STATUS = {"busy": "busy", "no_answer": "no_answer", "rejected": "rejected", "forbidden": "rejected"}


class DialBlocked(UserError):
    """A compliance gate refused the dial; `reasons` says which and until when."""

    status = 409
    error_id = "dial_blocked"


class SeatRefused(UserError):
    status = 409
    error_id = "seat_refused"


class NoSeat(UserError):
    """No seat can take the call (none configured, or all busy): the agent can try again, so a 409."""

    status = 409
    error_id = "no_seat_free"


def merge_script(script: str, fields: dict[str, str]) -> str:
    """The campaign script with {name}, {company}, {agent}... filled in; unknown names stay as written."""
    return _PLACEHOLDER.sub(lambda m: str(fields.get(m.group(1), m.group(0))), script)


def _rows(records) -> list[dict]:
    return [dict(r.items()) for r in records]


@dataclass
class Desk:
    ctx: AppContext
    user: dict

    @property
    def agent_id(self) -> int:
        return self.user["id"]

    @property
    def rules(self) -> hopper.HopperRules:
        s = self.ctx.settings
        return hopper.HopperRules(
            default_region=s.crm.default_region,
            default_time_zone=s.crm.default_time_zone,
            claim_minutes=s.dialer.claim_minutes,
            blocked_recheck_minutes=s.dialer.blocked_recheck_minutes,
        )

    # --- reading the desk ---------------------------------------------------------

    async def state(self, now: dt.datetime) -> dict:
        """Everything the page shows: status and time in it, the lead and customer card with
        the merged script, the current call, my due callbacks, the campaigns and codes."""
        async with self.ctx.pool.acquire() as conn:
            status = await self._settle_call_end(conn, now)
            call = await self._current_call(conn)
            lead = await hopper.current_claim(conn, self.agent_id, now)
            if lead is None and call is not None and call["lead_id"] is not None and call["disposition"] is None:
                lead = await conn.fetchrow("select * from leads where id = $1", call["lead_id"])
            campaigns = await conn.fetch(
                """select id, name, dialing_mode, calling_window_start, calling_window_end from campaigns
                   where active and kind = 'outbound_sales' order by name"""
            )
            callbacks = await follow_ups.due_for_agent(conn, self.agent_id, until=now + CALLBACKS_AHEAD)
            card = await self._card(conn, lead, now) if lead is not None else None
        return {
            "status": None if status is None else {
                "status": status["status"], "reason": status["reason"], "campaign_id": status["campaign_id"],
                "since": status["started_at"], "seconds": int((now - status["started_at"]).total_seconds()),
            },
            "lead": card,
            "call": None if call is None else dict(call.items()),
            "callbacks": [{**dict(r.items()), "due": r["due_at"] <= now} for r in callbacks],
            "campaigns": _rows(campaigns),
            "pause_reasons": self.ctx.settings.dialer.pause_reasons,
            "now": now,
        }

    async def _card(self, conn: asyncpg.Connection, lead: asyncpg.Record, now: dt.datetime) -> dict:
        campaign = await conn.fetchrow("select * from campaigns where id = $1", lead["campaign_id"])
        customer_file = await customer_store.customer_file(conn, lead["customer_id"], interactions_limit=50)
        customer = customer_file["customer"]
        # QA scores beside each call, where the QA worker has scored it.
        scores = {
            r["call_id"]: r["score"]
            for r in await conn.fetch(
                """select distinct on (call_id) call_id, score from qa_results
                   where call_id = any($1::uuid[]) order by call_id, created_at desc""",
                [c["id"] for c in customer_file["calls"]],
            )
        }
        for c in customer_file["calls"]:
            c["qa_score"] = scores.get(c["id"])
        fields = {
            "name": customer["name"], "company": customer["company"], "phone": lead["phone"],
            "email": customer["email"] or "", "campaign": campaign["name"],
            "agent": self.user.get("display_name") or self.user["username"],
        }
        verdict = await self._verdict(conn, lead, now)
        return {
            "lead_id": lead["id"], "phone": lead["phone"], "status": lead["status"],
            "attempts_total": lead["attempts_total"], "campaign": {"id": campaign["id"], "name": campaign["name"]},
            "script": merge_script(campaign["script"], fields),
            "gates": verdict.to_json(),
            **customer_file,
        }

    async def _verdict(self, conn, lead, now) -> compliance.Verdict:
        return await compliance.check_dial(
            conn, campaign_id=lead["campaign_id"], lead_id=lead["id"], now=now,
            default_region=self.rules.default_region, default_time_zone=self.rules.default_time_zone,
        )

    async def _current_call(self, conn: asyncpg.Connection) -> asyncpg.Record | None:
        """The agent's latest call still to be wrapped up (open, or ended without a disposition)."""
        return await conn.fetchrow(
            """select id, lead_id, customer_id, campaign_id, to_number, seat, created_at, answered_at,
                      ended_at, sip_code, hangup_side, hangup_cause, disposition
               from calls where agent_id = $1 and disposition is null
                 and not exists (select 1 from call_dispositions d where d.call_id = calls.id)
               order by created_at desc limit 1""",
            self.agent_id,
        )

    async def _settle_call_end(self, conn: asyncpg.Connection, now: dt.datetime) -> asyncpg.Record | None:
        """Transitions that follow the clock and the calls, applied when the desk is read: a call
        whose far end hung up (the seat wrote ended_at) puts the agent in wrap-up; a wrap-up longer
        than dialer.max_wrap_up_seconds becomes a pause (reason wrap_up_timeout)."""
        status = await agent_status.current(conn, self.agent_id)
        if status is not None and status["status"] == "on_call":
            call = await self._current_call(conn)
            if call is None or call["ended_at"] is not None:
                ended = call["ended_at"] if call is not None else now
                status = await agent_status.set_status(conn, self.agent_id, "wrap_up", now=min(ended, now),
                                                       campaign_id=status["campaign_id"])
        limit = self.ctx.settings.dialer.max_wrap_up_seconds
        if status is not None and status["status"] == "wrap_up" and limit > 0:
            timeout_at = status["started_at"] + dt.timedelta(seconds=limit)
            if now >= timeout_at:
                status = await agent_status.set_status(conn, self.agent_id, "paused", reason=WRAP_UP_TIMEOUT,
                                                       now=timeout_at, campaign_id=status["campaign_id"])
        return status

    # --- status -----------------------------------------------------------------------

    async def set_status(self, status: str, *, reason: str | None, campaign_id: int | None,
                         now: dt.datetime) -> asyncpg.Record:
        if status not in agent_status.CHOSEN:
            raise UserError(f"status must be one of {', '.join(agent_status.CHOSEN)}; on_call and "
                            "wrap_up follow the calls", fields=["status"])
        async with self.ctx.pool.acquire() as conn:
            current = await self._settle_call_end(conn, now)
            if current is not None and current["status"] == "on_call":
                raise IllegalTransition("hang up first", from_state="on_call", to_state=status)
            if status == "ready" and await self._current_call(conn) is not None:
                raise IllegalTransition("record the disposition of your last call first",
                                        from_state=None if current is None else current["status"], to_state=status)
            if campaign_id is None and current is not None:
                campaign_id = current["campaign_id"]
            if campaign_id is not None and await conn.fetchval(
                    "select 1 from campaigns where id = $1", campaign_id) is None:
                raise NotFound(f"no campaign {campaign_id}", fields=["campaign_id"])
            return await agent_status.set_status(
                conn, self.agent_id, status, reason=reason, campaign_id=campaign_id, now=now,
                pause_reasons=self.ctx.settings.dialer.pause_reasons,
            )

    async def _require_status(self, conn, *allowed: str) -> asyncpg.Record:
        current = await agent_status.current(conn, self.agent_id)
        if current is None or current["status"] not in allowed:
            now_in = "not at the desk" if current is None else current["status"]
            raise IllegalTransition(f"you are {now_in}; this needs status {' or '.join(allowed)}",
                                    from_state=None if current is None else current["status"])
        return current

    # --- leads ----------------------------------------------------------------------

    async def next_lead(self, campaign_id: int, now: dt.datetime) -> hopper.Pick | None:
        async with self.ctx.pool.acquire() as conn:
            await self._require_status(conn, "ready")
            pick = await hopper.next_lead(conn, campaign_id=campaign_id, agent_id=self.agent_id, now=now,
                                          rules=self.rules)
            await agent_status.set_status(conn, self.agent_id, "ready", campaign_id=campaign_id, now=now)
        return pick

    async def take(self, lead_id: int, now: dt.datetime) -> None:
        async with self.ctx.pool.acquire() as conn:
            await self._require_status(conn, "ready", "paused")
            await hopper.take(conn, lead_id, agent_id=self.agent_id, now=now, minutes=self.rules.claim_minutes)

    async def skip(self, lead_id: int, reason: str, now: dt.datetime) -> None:
        async with self.ctx.pool.acquire() as conn:
            await hopper.skip(conn, lead_id, agent_id=self.agent_id, reason=reason, now=now,
                              defer_minutes=self.ctx.settings.dialer.skip_minutes)

    # --- calls ----------------------------------------------------------------------

    async def dial(self, lead_id: int, now: dt.datetime) -> dict:
        """Gates first (every dial, callbacks included); a blocked dial writes no call and says why.

        The agent and the seat are claimed (telesales/claims.py) and the call row written in the agent's
        name, on_call, in one transaction: a predictive or inbound call cannot reach the agent meanwhile,
        nor a dialer take the seat (409 naming what holds them)."""
        async with self.ctx.pool.acquire() as conn:
            seat, placed = None, False
            try:
                async with conn.transaction():
                    # First: the agent's lock, held to the commit, and a 409 saying what they are busy with.
                    status = await claims.claim_agent(conn, self.agent_id, claims.MANUAL_DIAL,
                                                      statuses=("ready", "paused"), subject="you are")
                    lead = await conn.fetchrow("select * from leads where id = $1 for update", lead_id)
                    if lead is None:
                        raise NotFound(f"no lead {lead_id}", fields=["lead_id"])
                    if lead["claimed_by"] != self.agent_id:
                        raise Conflict(f"lead {lead_id} is not in front of you; take it first", fields=["lead_id"])
                    verdict = await self._verdict(conn, lead, now)
                    if verdict.allowed:
                        seat, call_id = await self._claim_and_record(conn, lead, now)
                if not verdict.allowed:
                    # Audited outside the refused transaction: who tried to dial whom, and why it was refused.
                    await audit.record(conn, self.agent_id, "dial.blocked", "lead", lead_id,
                                       {"phone": lead["phone"], **verdict.to_json()})
                    raise DialBlocked(
                        "cannot dial " + lead["phone"] + ": " + "; ".join(b.message for b in verdict.blocks),
                        fields=["lead_id"], reasons=[b.to_json() for b in verdict.blocks],
                    )
                if seat is not None:
                    await self._place(conn, seat, call_id, lead, status, now)
                    placed = True
            except BaseException:
                if seat is not None and not placed:
                    self.ctx.seats.claims.release(seat)  # the call never got to the seat
                raise
        log.info("dial", extra={"agent_id": self.agent_id, "lead_id": lead_id, "call_id": str(call_id),
                                "from_status": status["status"], "seat": None if seat is None else seat.seat})
        return {"call_id": str(call_id), "lead_id": lead_id, "phone": lead["phone"]}

    async def _claim_and_record(self, conn: asyncpg.Connection, lead: asyncpg.Record,
                                now: dt.datetime) -> tuple[SeatClaim | None, uuid.UUID]:
        """Inside the dial's transaction, the agent claimed: a seat claimed, the call row in the agent's
        name, the agent on_call and the lead's claim lasting through the call and its wrap-up."""
        await conn.execute("update leads set claim_expires_at = $2 where id = $1", lead["id"],
                           now + dt.timedelta(minutes=self.rules.claim_minutes))
        # No SIP trunk for the desk: the agent dials on their own phone; the call is recorded here.
        seat = self.ctx.seats.claims.claim(claims.MANUAL_DIAL) if self._dials_through_seats() else None
        try:
            row = await call_store.create_call(conn, direction="outbound", agent_id=self.agent_id,
                                               lead_id=lead["id"], to_number=lead["phone"],
                                               seat=None if seat is None else seat.seat, now=now)
            await agent_status.set_status(conn, self.agent_id, "on_call", campaign_id=lead["campaign_id"], now=now)
            if seat is not None:
                self.ctx.seats.claims.attach(seat, row["id"])  # before the dial: its end lets the seat go
        except BaseException:
            if seat is not None:
                self.ctx.seats.claims.release(seat)
            raise
        return seat, row["id"]

    def _dials_through_seats(self) -> bool:
        return self.ctx.seats is not None and self.ctx.settings.telephony.seats > 0 \
            and bool(self.ctx.settings.dialer.dial_uri)

    async def _place(self, conn: asyncpg.Connection, seat: SeatClaim, call_id: uuid.UUID, lead: asyncpg.Record,
                     before: asyncpg.Record, now: dt.datetime) -> None:
        """The call out through the claimed seat; refused, the row is closed (dial_failed), the seat let go
        and the agent back in the status they dialled from."""
        uri = dial_uri_for(self.ctx.settings.dialer, lead["phone"])
        try:
            if uri is None:
                raise CommandError(f"no dialer.dial_routes entry or dial_uri reaches {lead['phone']}")
            await self.ctx.seats.place(seat.seat, call_id, uri)
        except (CommandError, SeatUnavailable) as e:
            self.ctx.seats.claims.release(seat)
            await agent_status.set_status(conn, self.agent_id, before["status"], reason=before["reason"],
                                          campaign_id=before["campaign_id"], now=now)
            raise NoSeat(f"the call could not be placed: {e}") from None

    async def hangup(self, call_id: uuid.UUID, now: dt.datetime) -> None:
        async with self.ctx.pool.acquire() as conn:
            call = await call_store.get_call(conn, call_id)
            if call["agent_id"] != self.agent_id:
                raise Conflict(f"call {call_id} is not yours", fields=["call_id"])
            if call["ended_at"] is None:
                if call["seat"] and self.ctx.seats is not None:
                    # The seat's CallEnded event writes the row (seats.py).
                    try:
                        await self.ctx.seats.manager.seat(call["seat"]).hangup(call_id)
                    except (CommandError, SeatUnavailable) as e:
                        raise SeatRefused(f"the seat could not hang up: {e}") from None
                else:
                    await call_store.end_call(conn, call_id, ended_at=now, hangup_side="agent",
                                              hangup_cause="normal_clearing")
            current = await agent_status.current(conn, self.agent_id)
            await agent_status.set_status(conn, self.agent_id, "wrap_up", now=now,
                                          campaign_id=None if current is None else current["campaign_id"])

    async def call_control(self, call_id: uuid.UUID, action: str, *, digits: str | None = None,
                           number: str | None = None, agent_id: int | None = None) -> dict:
        """Hold, resume, send DTMF or transfer (blind, to a number or an agent's phone) on my seat call."""
        if action not in CALL_ACTIONS:
            raise UserError(f"action must be one of {', '.join(CALL_ACTIONS)}", fields=["action"])
        async with self.ctx.pool.acquire() as conn:
            call = await call_store.get_call(conn, call_id)
            if call["agent_id"] != self.agent_id:
                raise Conflict(f"call {call_id} is not yours", fields=["call_id"])
            if call["ended_at"] is not None:
                raise IllegalTransition(f"call {call_id} has ended", from_state="ended")
            if not call["seat"] or self.ctx.seats is None:
                raise IllegalTransition("this call is on your own phone; use its buttons", from_state="on_call")
            target = await self._transfer_target(conn, call, number, agent_id) if action == "transfer" else None
        if action == "dtmf" and not (digits and _DTMF.fullmatch(digits)):
            raise UserError("digits must be 1-32 of 0-9 * # A-D", fields=["digits"])
        seat = self.ctx.seats.manager.seat(call["seat"])
        try:
            match action:
                case "hold":
                    await seat.hold(call_id)
                case "unhold":
                    await seat.unhold(call_id)
                case "dtmf":
                    await seat.send_dtmf(call_id, digits)
                case "transfer":
                    await seat.transfer(call_id, target)
        except (CommandError, SeatUnavailable) as e:
            raise SeatRefused(f"the seat could not {action}: {e}") from None
        log.info("call control", extra={"agent_id": self.agent_id, "call_id": str(call_id), "action": action})
        return {"call_id": str(call_id), "action": action, "target": target}

    async def _transfer_target(self, conn, call, number: str | None, agent_id: int | None) -> str:
        if (number is None) == (agent_id is None):
            raise UserError("a transfer goes to a number or an agent_id", fields=["number", "agent_id"])
        if agent_id is not None:
            uri = await conn.fetchval("select sip_uri from users where id = $1 and active", agent_id)
            if not uri:
                raise UserError(f"agent {agent_id} has no phone (sip_uri) to transfer to", fields=["agent_id"])
            return uri
        e164 = customer_store.normalise_phone(number, self.rules.default_region, field="number")
        prefixes = await conn.fetchval("select allowed_prefixes from campaigns where id = $1", call["campaign_id"])
        block = compliance.destination_block(e164, tuple(prefixes or ()), self.rules.default_region)
        if block is not None:
            raise DialBlocked(f"cannot transfer to {e164}: {block.message}", fields=["number"],
                              reasons=[block.to_json()])
        if not self.ctx.settings.dialer.dial_uri:
            raise UserError("no dialer.dial_uri is configured to reach numbers", fields=["number"])
        return self.ctx.settings.dialer.dial_uri.replace("{number}", e164)

    async def line_test(self, *, answer_seconds: float = 2.0, ring_timeout: float = 15.0) -> dict:
        """"Test my line": one call through a free seat to dialer.line_test_uri (else my own phone),
        held answer_seconds after the answer, reported like `telesales call`. The call row has no
        agent, so it is never a call the agent owes a disposition for."""
        if self.ctx.seats is None or self.ctx.settings.telephony.seats <= 0:
            raise NoSeat("no seats are configured on this service (telephony.seats = 0)")
        async with self.ctx.pool.acquire() as conn:
            target = self.ctx.settings.dialer.line_test_uri or await conn.fetchval(
                "select sip_uri from users where id = $1", self.agent_id)
            if not target:
                raise UserError("nothing to call: set dialer.line_test_uri or your phone (sip_uri)")
            claim = self.ctx.seats.claims.claim(claims.LINE_TEST)
            seat = claim.seat
            try:
                await audit.record(conn, self.agent_id, "line_test", "seat", seat, {"target": target})
            except BaseException:
                self.ctx.seats.claims.release(claim)
                raise
        try:
            call_id = await self.ctx.seats.dial(seat, target, ring_timeout=ring_timeout, claim=claim)
        except (CommandError, SeatUnavailable) as e:
            self.ctx.seats.claims.release(claim)
            raise SeatRefused(f"the seat could not place the test call: {e}") from None
        row = await self._wait_for(call_id, lambda r: r["answered_at"] is not None or r["ended_at"] is not None,
                                   ring_timeout + 5)
        if row["ended_at"] is None:
            await asyncio.sleep(answer_seconds)
            with contextlib.suppress(CommandError, SeatUnavailable):
                await self.ctx.seats.manager.seat(seat).hangup(call_id)
            row = await self._wait_for(call_id, lambda r: r["ended_at"] is not None, 10)
        answered = row["answered_at"] is not None
        return {
            "target": target, "seat": seat, "call_id": str(call_id),
            "status": "answered" if answered else LINE_TEST_STATUS.get(row["hangup_cause"], "failed"),
            "sip_code": row["sip_code"], "hangup_cause": row["hangup_cause"],
            "seconds_to_answer": round((row["answered_at"] - row["created_at"]).total_seconds(), 3)
            if answered else None,
        }

    async def _wait_for(self, call_id: uuid.UUID, condition, timeout: float) -> asyncpg.Record:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with self.ctx.pool.acquire() as conn:
                row = await call_store.get_call(conn, call_id)
            if condition(row) or asyncio.get_running_loop().time() > deadline:
                return row
            await asyncio.sleep(0.1)

    async def wrap_up(self, body: dict, now: dt.datetime) -> dict:
        """The disposition (with what its code needs) and, in the same transaction, the lead's
        claim released and the agent ready again (a paused agent stays paused)."""
        crm = self.ctx.settings.crm
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            call_id = parse_call_id(body.get("call_id")) if isinstance(body, dict) else None
            if call_id is not None and await conn.fetchval(
                    "select id from calls where id = $1 and ended_at is null", call_id) is not None:
                raise IllegalTransition("hang up before recording the disposition", from_state="on_call")
            lead_ref = str(body.get("lead_id")) if isinstance(body, dict) else ""
            if call_id is None and lead_ref.isdigit() and int(lead_ref) < 2**63:
                # Without a call, only the lead in front of the agent (record_disposition names a bad id).
                lead = await conn.fetchrow("select claimed_by from leads where id = $1", int(lead_ref))
                if lead is not None and lead["claimed_by"] != self.agent_id:
                    raise Conflict(f"lead {lead_ref} is not in front of you; take it first", fields=["lead_id"])
            result = await record_disposition(
                conn, self.ctx.catalog, body, agent_id=self.agent_id, now=now,
                payment_methods=crm.payment_methods, departments=crm.departments,
                default_currency=crm.default_currency, ack_hours=crm.complaint_ack_hours,
                resolve_hours=crm.complaint_resolve_hours, own_calls_only=True,
                qa_scorecard=self.ctx.settings.qa.scorecard,
            )
            if result["lead_id"] is not None:
                await hopper.release(conn, result["lead_id"], self.agent_id)
            current = await agent_status.current(conn, self.agent_id)
            if current is None or current["status"] in ("wrap_up", "on_call"):
                await agent_status.set_status(conn, self.agent_id, "ready", now=now,
                                              campaign_id=None if current is None else current["campaign_id"])
        return result

