"""Who is busy with what: the one place that hands an agent or a seat to a call.

The manual dial (agent desk), the predictive dialer and the inbound queue all want the same two things
-- an agent and a seat -- and before this module each decided from its own reading of the calls, so
two of them could take the same agent or seat between a read and a write. Now each goes through here.

Agents: `claim_agent(conn, agent_id, purpose)`, inside the caller's transaction. Agents are rows in
the shared database, and every service process that runs dialers or a queue routes the same agents
(ARCHITECTURE.md, "Scaling out": several telephony hosts, PostgreSQL the shared state), so the claim is
PostgreSQL's: the transaction-scoped advisory lock that crm.agent_status already takes for an agent's
status, then a check that the agent has no call under way or owed a wrap-up. The caller writes its
mark (the call row in the agent's name, status on_call) in the same transaction, so when the lock is
let go the mark is there for the next claimant to see. Nothing to clean up after a crash: the lock
goes with the transaction, and the mark is the call row itself, which says what the agent is busy with.

Seats: `SeatClaims`, in this process. Seats are this service's own child processes (named seat1..N per
service, restarted with it), so no other process can dial from them; the call row a dial writes comes
too late to be the mark (the seat is chosen before it), so the claim is taken in memory, with no await
between the check and the take (atomic on the event loop), and let go when its call ends. A caller
waiting in the inbound queue does not hold its seat: the seat is free for a dial until an agent takes
that caller (then the queue claims the seat for that call).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import uuid
from collections.abc import Callable

import asyncpg

from crm.errors import UserError
from telephony import events as ev

log = logging.getLogger("telesales.claims")

# Purposes, as the busy messages name them.
MANUAL_DIAL = "manual dial"
PREDICTIVE = "predictive call"
INBOUND = "inbound call"
LINE_TEST = "line test"

_AGENT_LOCK = "select pg_advisory_xact_lock(hashtext('agent_status'), ($1 % 2147483647)::int)"

# The agent's call under way or owed a wrap-up, newest first, with what kind of call it is.
_AGENT_CALL = """
select k.id, k.direction, k.ended_at, k.to_number, k.from_number, c.dialing_mode
from calls k left join campaigns c on c.id = k.campaign_id
where k.agent_id = $1 and k.disposition is null
  and not exists (select 1 from call_dispositions d where d.call_id = k.id)
order by k.created_at desc limit 1
"""


class AgentBusy(UserError):
    """The agent already has a call (being connected, up, or owed a wrap-up)."""

    status = 409
    error_id = "agent_busy"


class SeatBusy(UserError):
    """No seat can take the call: each is held by another call."""

    status = 409
    error_id = "seat_busy"


def _kind(call: asyncpg.Record) -> str:
    if call["direction"] == "inbound":
        return f"an inbound call from {call['from_number'] or 'a withheld number'}"
    if call["dialing_mode"] == "predictive":
        return f"a predictive call to {call['to_number']}"
    return f"a call to {call['to_number'] or 'your phone'}"


async def claim_agent(conn: asyncpg.Connection, agent_id: int, purpose: str, *,
                      statuses: tuple[str, ...] = ("ready",), subject: str | None = None) -> asyncpg.Record:
    """Hold the agent for `purpose` until the caller's transaction ends; returns their status row.

    AgentBusy (409) names what they are busy with when they have a call, or are in a status
    other than `statuses` (subject: how the message names them, "you are" on their own desk).
    The caller must write its mark (call row, on_call) before committing."""
    subject = subject or f"agent {agent_id} is"
    if not conn.is_in_transaction():
        raise RuntimeError("claim_agent needs the caller's transaction (the claim lasts as long as it)")
    await conn.execute(_AGENT_LOCK, agent_id)
    call = await conn.fetchrow(_AGENT_CALL, agent_id)
    if call is not None:
        state = "on" if call["ended_at"] is None else "still to wrap up"
        raise AgentBusy(f"cannot start a {purpose}: {subject} {state} {_kind(call)} (call {call['id']})",
                        call_id=str(call["id"]))
    status = await conn.fetchrow("select * from agent_status_log where user_id = $1 and ended_at is null",
                                 agent_id)
    if status is None or status["status"] not in statuses:
        now_in = "not at the desk" if status is None else status["status"]
        raise AgentBusy(f"cannot start a {purpose}: {subject} {now_in}; this needs {' or '.join(statuses)}")
    return status


@dataclasses.dataclass
class SeatClaim:
    seat: str
    purpose: str
    token: int
    call_id: str | None = None  # set once the call exists; its end lets the seat go
    keep_after_end: bool = False  # the holder lets go itself (a phone leg still being hung up)


class SeatClaims:
    """The seats of this service and the call each is held for."""

    def __init__(self, seat_names: list[str]) -> None:
        self.names = list(seat_names)
        self._held: dict[str, SeatClaim] = {}
        self._tokens = itertools.count(1)
        # seat -> callers waiting on it (the inbound queue sets this): a dial takes seats without first.
        self.waiting: Callable[[], dict[str, int]] = dict
        self.on_release: list[Callable[[str], None]] = []

    def holder(self, seat: str) -> SeatClaim | None:
        return self._held.get(seat)

    def free(self) -> list[str]:
        """Free seats, those with no caller waiting on them first (in seat order within each)."""
        waiting = self.waiting()
        free = [s for s in self.names if s not in self._held]
        return sorted(free, key=lambda s: waiting.get(s, 0))

    def claim(self, purpose: str, seat: str | None = None, *, keep_after_end: bool = False) -> SeatClaim:
        """The named seat, or the first free one; SeatBusy saying who holds it otherwise."""
        if seat is None:
            free = self.free()
            if not free:
                held = ", ".join(f"{c.seat}: {c.purpose}" for c in self._held.values())
                raise SeatBusy(f"every seat is on a call ({held or 'no seats configured'}); try again in a moment")
            seat = free[0]
        elif seat in self._held:
            raise SeatBusy(f"{seat} is busy with a {self._held[seat].purpose}", seat=seat)
        claim = self._held[seat] = SeatClaim(seat, purpose, next(self._tokens), keep_after_end=keep_after_end)
        log.info("seat claimed", extra={"seat": seat, "purpose": purpose})
        return claim

    def attach(self, claim: SeatClaim, call_id: uuid.UUID | str) -> None:
        claim.call_id = str(call_id)

    def release(self, claim: SeatClaim) -> None:
        """Let the seat go; a claim already let go (or replaced) is left alone."""
        if self._held.get(claim.seat) is claim:
            del self._held[claim.seat]
            log.info("seat released", extra={"seat": claim.seat, "purpose": claim.purpose,
                                             "call_id": claim.call_id})
            for callback in self.on_release:
                callback(claim.seat)

    def on_event(self, event: ev.Event) -> None:
        """Seat events: a call's end lets its seat go, a crashed seat lets go of everything it held."""
        if isinstance(event, ev.CallEnded):
            for claim in list(self._held.values()):
                if claim.call_id == event.call_id and not claim.keep_after_end:
                    self.release(claim)
        elif isinstance(event, ev.SeatCrashed):
            claim = self._held.get(event.seat)
            if claim is not None:
                self.release(claim)
