"""Call records (CDRs): created when a call starts, ended at hang-up.

Minimal for now; the telephony layer fills in ringing, answer, SIP codes and
recordings.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import asyncpg

from crm.errors import Conflict, NotFound, UserError
from crm.fields import parse_call_id

DIRECTIONS = ("outbound", "inbound")
HANGUP_SIDES = ("agent", "customer", "system")


async def create_call(
    conn: asyncpg.Connection,
    *,
    direction: str,
    agent_id: int | None,
    lead_id: int | None = None,
    customer_id: int | None = None,
    campaign_id: int | None = None,
    from_number: str | None = None,
    to_number: str | None = None,
    seat: str | None = None,
    now: dt.datetime | None = None,
) -> asyncpg.Record:
    """Insert a call. With a lead, its customer, campaign and number fill what is not given,
    and an outbound call counts as one attempt on the lead (today's and lifetime)."""
    if direction not in DIRECTIONS:
        raise UserError(f"direction must be one of {', '.join(DIRECTIONS)}", fields=["direction"])
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        if lead_id is not None:
            lead = await conn.fetchrow("select * from leads where id = $1 for update", lead_id)
            if lead is None:
                raise NotFound(f"no lead {lead_id}")
            customer_id = customer_id or lead["customer_id"]
            campaign_id = campaign_id or lead["campaign_id"]
            if direction == "outbound":
                to_number = to_number or lead["phone"]
                # attempts_day is the server's UTC date; the dialer's daily limit reads the same.
                await conn.execute(
                    """update leads set
                           attempts_today = case when attempts_day = $2
                                             then attempts_today + 1 else 1 end,
                           attempts_day = $2,
                           attempts_total = attempts_total + 1,
                           last_attempt_at = $3, updated_at = $3
                       where id = $1""",
                    lead_id,
                    now.astimezone(dt.UTC).date(),
                    now,
                )
            else:
                from_number = from_number or lead["phone"]
        return await conn.fetchrow(
            """insert into calls (direction, seat, agent_id, customer_id, lead_id, campaign_id,
                   from_number, to_number, created_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning *""",
            direction,
            seat,
            agent_id,
            customer_id,
            lead_id,
            campaign_id,
            from_number,
            to_number,
            now,
        )


async def end_call(
    conn: asyncpg.Connection,
    call_id: uuid.UUID | str,
    *,
    ended_at: dt.datetime | None = None,
    answered_at: dt.datetime | None = None,
    sip_code: int | None = None,
    hangup_side: str | None = None,
    hangup_cause: str | None = None,
) -> asyncpg.Record:
    """Record the hang-up; the duration runs from the answer (0 when never answered)."""
    if hangup_side is not None and hangup_side not in HANGUP_SIDES:
        raise UserError(
            f"hangup_side must be one of {', '.join(HANGUP_SIDES)}", fields=["hangup_side"]
        )
    ended_at = ended_at or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        call = await conn.fetchrow(
            "select * from calls where id = $1 for update", parse_call_id(call_id)
        )
        if call is None:
            raise NotFound(f"no call {call_id}")
        if call["ended_at"] is not None:
            raise Conflict(f"call {call_id} has already ended")
        answered = answered_at or call["answered_at"]
        duration = (ended_at - answered).total_seconds() if answered else 0
        return await conn.fetchrow(
            """update calls set ended_at = $2, answered_at = $3, sip_code = coalesce($4, sip_code),
                   hangup_side = $5, hangup_cause = $6, duration_seconds = $7
               where id = $1 returning *""",
            call["id"],
            ended_at,
            answered,
            sip_code,
            hangup_side,
            hangup_cause,
            Decimal(str(round(max(duration, 0), 3))),
        )


async def get_call(conn: asyncpg.Connection, call_id: uuid.UUID | str) -> asyncpg.Record:
    row = await conn.fetchrow("select * from calls where id = $1", parse_call_id(call_id))
    if row is None:
        raise NotFound(f"no call {call_id}")
    return row


RECORDING_STATES = ("none", "recording", "complete", "repaired", "failed_storage")


async def mark_call_progress(
    conn: asyncpg.Connection,
    call_id: uuid.UUID | str,
    *,
    sip_call_id: str | None = None,
    ringing_at: dt.datetime | None = None,
    answered_at: dt.datetime | None = None,
) -> asyncpg.Record | None:
    """Fill SIP Call-ID, ringing and answer times as the telephony layer reports them.

    Each is kept once set (the first 180 is the ringing time, re-INVITEs do not move
    the answer); an ended call is left alone. Returns the row, or None when it has ended."""
    return await conn.fetchrow(
        """update calls set sip_call_id = coalesce(sip_call_id, $2),
               ringing_at = coalesce(ringing_at, $3),
               answered_at = coalesce(answered_at, $4)
           where id = $1 and ended_at is null returning *""",
        parse_call_id(call_id),
        sip_call_id,
        ringing_at,
        answered_at,
    )


async def set_recording(
    conn: asyncpg.Connection,
    call_id: uuid.UUID | str,
    *,
    state: str,
    path: str | None = None,
    sha256: str | None = None,
) -> asyncpg.Record:
    """Record where a call's recording is and what became of it (the call may have ended)."""
    if state not in RECORDING_STATES:
        raise UserError(f"recording_state must be one of {', '.join(RECORDING_STATES)}", fields=["recording_state"])
    row = await conn.fetchrow(
        """update calls set recording_state = $2, recording_path = coalesce($3, recording_path),
               recording_sha256 = coalesce($4, recording_sha256)
           where id = $1 returning *""",
        parse_call_id(call_id),
        state,
        path,
        sha256,
    )
    if row is None:
        raise NotFound(f"no call {call_id}")
    return row


async def calls_recording(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Calls whose recording was never closed: after a crash these need their WAV repaired."""
    return await conn.fetch(
        "select id, recording_path, ended_at from calls where recording_state = 'recording' order by created_at"
    )
