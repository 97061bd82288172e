"""The review queue: which calls a reviewer should look at first, and claims so two reviewers never take the same one.

A call is queued when its latest QA result has not been reviewed and one of
these holds, in this order of priority:

1. failed_compliance: a check of the compliance category failed;
2. sale_unconfirmed: a SALE whose price, delivery or payment confirmation check failed;
3. low_score: the score is below the threshold;
4. sample: the agent's one randomly drawn call of that ISO week (drawn by a hash of the call id,
   so every reviewer sees the same sample and it does not change between page loads).

The viewer's access rule applies (reviewers: their assigned teams). Calls
claimed by another reviewer are left out.
"""

from __future__ import annotations

import uuid

import asyncpg

from crm.errors import Conflict, NotFound
from crm.transcript_search import Viewer, reviewer_teams

SALE_CONFIRMATIONS = ("price_confirmed", "delivery_confirmed", "payment_confirmed")


async def queue(conn: asyncpg.Connection, viewer: Viewer, *, low_score: float, limit: int) -> list[asyncpg.Record]:
    teams = await reviewer_teams(conn, viewer)
    return await conn.fetch(
        """with latest as (
               select distinct on (r.call_id) r.id as result_id, r.call_id, r.checks, r.score
               from qa_results r order by r.call_id, r.created_at desc, r.id desc),
           candidates as (
               select l.*, c.agent_id, c.created_at, ag.username as agent,
                      coalesce(c.disposition, cd.code) as disposition,
                      rc.reviewer_id as claimed_by,
                      row_number() over (partition by c.agent_id, date_trunc('week', c.created_at)
                                         order by md5(c.id::text)) as draw
               from latest l
               join calls c on c.id = l.call_id
               left join users ag on ag.id = c.agent_id
               left join call_dispositions cd on cd.call_id = c.id
               left join review_claims rc on rc.call_id = c.id
               where not exists (select 1 from qa_reviews rv where rv.result_id = l.result_id)
                 and ($1 = 'admin' or cardinality($2::bigint[]) = 0 or ag.team_id = any($2::bigint[]))),
           reasons as (
               select *, case
                   when checks @> '[{"category": "compliance", "passed": false}]' then 'failed_compliance'
                   when disposition = 'SALE' and exists (
                       select 1 from jsonb_array_elements(checks) e
                       where e->>'id' = any($3::text[]) and e->'passed' = 'false') then 'sale_unconfirmed'
                   when score < $4 then 'low_score'
                   when agent_id is not null and draw = 1 then 'sample'
                   end as reason
               from candidates)
           select call_id, result_id, agent_id, agent, created_at as call_started_at, disposition, score, reason,
                  claimed_by, '/review/' || call_id as review_url
           from reasons
           where reason is not null and (claimed_by is null or claimed_by = $5)
           order by array_position(array['failed_compliance', 'sale_unconfirmed', 'low_score', 'sample'], reason),
                    score nulls first, created_at
           limit $6""",
        viewer.role,
        teams,
        list(SALE_CONFIRMATIONS),
        low_score,
        viewer.user_id,
        limit,
    )


async def claim(conn: asyncpg.Connection, call_id: uuid.UUID, reviewer_id: int) -> asyncpg.Record:
    """Claim a call for review; 409 when another reviewer holds it (claiming one's own again is fine)."""
    row = await conn.fetchrow(
        """insert into review_claims (call_id, reviewer_id) values ($1, $2)
           on conflict (call_id) do update set claimed_at = review_claims.claimed_at
           returning call_id, reviewer_id, claimed_at""",
        call_id,
        reviewer_id,
    )
    if row["reviewer_id"] != reviewer_id:
        holder = await conn.fetchval("select username from users where id = $1", row["reviewer_id"])
        raise Conflict(f"{holder} is already reviewing this call", claimed_by=holder)
    return row


async def release(conn: asyncpg.Connection, call_id: uuid.UUID, reviewer_id: int) -> None:
    status = await conn.execute(
        "delete from review_claims where call_id = $1 and reviewer_id = $2", call_id, reviewer_id
    )
    if status != "DELETE 1":
        raise NotFound("you hold no claim on this call")
