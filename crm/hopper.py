"""The lead hopper: which lead an agent works next in a campaign.

Order: due callbacks first (the owner's, plus unowned ones; any agent's when the
campaign's callbacks_any_agent is set), then new leads, then retries whose time
(the disposition's retry rules, written into leads.next_attempt_at by the
wrap-up) has come; within each, by priority. A lead the compliance gates block
is held back until its gate lifts (next_attempt_at moves there) and the next
one is tried.

Two agents never get the same lead: each candidate is locked FOR UPDATE SKIP LOCKED
and re-checked before it is looked at (a lead another agent's pick is looking at is
skipped, not waited for) and the chosen one gets a claim (claimed_by, claim_expires_at) that lasts while the
agent previews and dials it; the wrap-up or a skip releases it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from crm import audit, compliance
from crm.errors import Conflict, MissingFields, NotFound

BATCH = 50
MAX_SCANNED = 500  # per pick; the rest waits for the next pick


@dataclass(frozen=True)
class HopperRules:
    default_region: str
    default_time_zone: str
    claim_minutes: int = 30  # how long a claimed lead stays the agent's without a wrap-up
    # A lead blocked by a gate that only a person lifts (do-not-call, consent...) is looked
    # at again after this long instead of on every pick.
    blocked_recheck_minutes: int = 1440


@dataclass(frozen=True)
class Pick:
    lead_id: int
    tier: str  # callback, new, retry
    follow_up_id: int | None
    callback_due_at: dt.datetime | None
    held_back: int  # leads the gates held back during this pick


# One query per tier, each walking an index instead of ranking the whole campaign per pick.
# Shared conditions: $1 campaign, $2 agent, $3 now, $4 batch, $5 leads already looked at, $6 exclusive.
_FREE = """l.campaign_id = $1 and not l.closed
  and (l.claimed_by is null or l.claim_expires_at <= $3 or (l.claimed_by = $2 and $6))
  and (l.next_attempt_at is null or l.next_attempt_at <= $3)
  and l.id <> all($5::bigint[])"""
_NO_OPEN_CALLBACK = "not exists (select 1 from follow_ups f where f.lead_id = l.id and f.status = 'open')"

_TIER_QUERIES = {
    # $7: callbacks owned by other agents too (the campaign's callbacks_any_agent)
    "callback": f"""
select l.id, f.id as follow_up_id, f.due_at as callback_due_at
from follow_ups f join leads l on l.id = f.lead_id
where f.status = 'open' and f.due_at <= $3 and {_FREE}
  and (f.owner_agent_id is null or f.owner_agent_id = $2 or $7)
order by f.due_at, l.priority desc, l.id
limit $4""",
    "new": f"""
select l.id, null::bigint as follow_up_id, null::timestamptz as callback_due_at
from leads l
where l.status = 'new' and {_FREE} and {_NO_OPEN_CALLBACK}
order by l.priority desc, l.id
limit $4""",
    "retry": f"""
select l.id, null::bigint as follow_up_id, null::timestamptz as callback_due_at
from leads l
where l.status <> 'new' and {_FREE} and {_NO_OPEN_CALLBACK}
order by l.priority desc, l.next_attempt_at nulls first, l.id
limit $4""",
}

# Locks one candidate at a time: locking the whole batch would leave a second picker
# nothing to take while the first looks at its first lead.
_LOCK = """
select id from leads
where id = $1 and not closed
  and (claimed_by is null or claim_expires_at <= $3 or (claimed_by = $2 and $4))
  and (next_attempt_at is null or next_attempt_at <= $3)
for update skip locked
"""


async def _claim(conn: asyncpg.Connection, lead_id: int, agent_id: int, now: dt.datetime, minutes: int,
                 exclusive: bool = True) -> None:
    if exclusive:  # an agent holds one lead at a time: taking one releases any other
        await conn.execute(
            "update leads set claimed_by = null, claim_expires_at = null where claimed_by = $1 and id <> $2",
            agent_id, lead_id,
        )
    await conn.execute(
        "update leads set claimed_by = $2, claim_expires_at = $3 where id = $1",
        lead_id, agent_id, now + dt.timedelta(minutes=minutes),
    )


async def current_claim(conn: asyncpg.Connection, agent_id: int, now: dt.datetime) -> asyncpg.Record | None:
    """The lead the agent holds (unexpired claim), if any."""
    return await conn.fetchrow(
        "select * from leads where claimed_by = $1 and claim_expires_at > $2 order by id limit 1",
        agent_id, now,
    )


async def next_lead(
    conn: asyncpg.Connection, *, campaign_id: int, agent_id: int, now: dt.datetime, rules: HopperRules,
    exclusive: bool = True,
) -> Pick | None:
    """Claim the next lead for the agent, or None when nothing may be dialled now.

    exclusive=False: the claimant keeps its other claims (the predictive dialer's own user
    holds one per line it has out)."""
    async with conn.transaction():
        campaign = await conn.fetchrow(
            "select id, callbacks_any_agent, active from campaigns where id = $1", campaign_id
        )
        if campaign is None:
            raise NotFound(f"no campaign {campaign_id}", fields=["campaign_id"])
        if not campaign["active"]:
            raise Conflict(f"campaign {campaign_id} is not active", fields=["campaign_id"])
        seen: list[int] = []
        held_back = 0
        for tier, query in _TIER_QUERIES.items():
            while len(seen) < MAX_SCANNED:
                args = [campaign_id, agent_id, now, BATCH, seen, exclusive]
                if tier == "callback":
                    args.append(campaign["callbacks_any_agent"])
                rows = await conn.fetch(query, *args)
                if not rows:
                    break
                for row in rows:
                    if row["id"] in seen:
                        continue  # a lead with two open callbacks
                    seen.append(row["id"])
                    if await conn.fetchval(_LOCK, row["id"], agent_id, now, exclusive) is None:
                        continue  # another picker has it, or took it since the batch was read
                    verdict = await compliance.check_dial(
                        conn, campaign_id=campaign_id, lead_id=row["id"], now=now,
                        default_region=rules.default_region, default_time_zone=rules.default_time_zone,
                    )
                    if verdict.allowed:
                        await _claim(conn, row["id"], agent_id, now, rules.claim_minutes, exclusive)
                        return Pick(row["id"], tier, row["follow_up_id"], row["callback_due_at"], held_back)
                    held_back += 1
                    until = verdict.not_before or now + dt.timedelta(minutes=rules.blocked_recheck_minutes)
                    await conn.execute("update leads set next_attempt_at = $2 where id = $1", row["id"], until)
        return None


async def take(conn: asyncpg.Connection, lead_id: int, *, agent_id: int, now: dt.datetime, minutes: int) -> None:
    """Claim a named lead (a callback from the agent's list); refused while another agent holds it."""
    async with conn.transaction():
        lead = await conn.fetchrow("select * from leads where id = $1 for update", lead_id)
        if lead is None:
            raise NotFound(f"no lead {lead_id}", fields=["lead_id"])
        if lead["closed"]:
            raise Conflict(f"lead {lead_id} is closed ({lead['status']})", fields=["lead_id"])
        if lead["claimed_by"] not in (None, agent_id) and lead["claim_expires_at"] > now:
            raise Conflict(f"lead {lead_id} is being worked by another agent", fields=["lead_id"])
        await _claim(conn, lead_id, agent_id, now, minutes)


async def release(conn: asyncpg.Connection, lead_id: int, agent_id: int | None = None) -> None:
    """Drop the claim (after a wrap-up); with agent_id, only that agent's claim."""
    await conn.execute(
        """update leads set claimed_by = null, claim_expires_at = null
           where id = $1 and ($2::bigint is null or claimed_by = $2)""",
        lead_id, agent_id,
    )


async def skip(
    conn: asyncpg.Connection, lead_id: int, *, agent_id: int, reason: str, now: dt.datetime, defer_minutes: int
) -> asyncpg.Record:
    """The agent passes on a previewed lead: the claim goes, the lead waits defer_minutes
    (else the hopper would hand it straight back), and the reason is audited."""
    reason = (reason or "").strip()
    if not reason:
        raise MissingFields("skipping a lead needs a reason", fields=["reason"])
    async with conn.transaction():
        lead = await conn.fetchrow("select * from leads where id = $1 for update", lead_id)
        if lead is None:
            raise NotFound(f"no lead {lead_id}", fields=["lead_id"])
        if lead["claimed_by"] != agent_id:
            raise Conflict(f"lead {lead_id} is not yours to skip; take it first", fields=["lead_id"])
        row = await conn.fetchrow(
            """update leads set claimed_by = null, claim_expires_at = null,
                   next_attempt_at = greatest(coalesce(next_attempt_at, $2), $2), updated_at = $3
               where id = $1 returning *""",
            lead_id, now + dt.timedelta(minutes=defer_minutes), now,
        )
        await audit.record(conn, agent_id, "lead.skip", "lead", lead_id, {"reason": reason})
        return row
