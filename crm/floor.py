"""What the supervisor wallboard shows, read from the store: agents, their calls and today's counts,
predictive campaigns' abandon rates, and which teams a supervisor may watch.

The wallboard (telesales/floor_feed.py) reads these on connect (a snapshot)
and again for the agents and campaigns a change touched (NOTIFY
'floor_events', migration 0007).
"""

from __future__ import annotations

import datetime as dt

import asyncpg

# Every active agent, and anyone else with an open status stretch (a supervisor taking calls).
# The current call is the agent's open call (not yet ended); today's dials are outbound calls
# placed since day_start, connects those answered, sales dispositions with the sale flag.
_AGENTS = """
select u.id, u.username, u.display_name, u.team_id, t.name as team,
       s.status, s.reason, s.started_at as since,
       c.id as call_id, c.direction as call_direction, c.created_at as call_started,
       c.answered_at as call_answered, coalesce(cu.name, '') as customer,
       coalesce(c.to_number, c.from_number) as customer_number, cp.name as campaign,
       coalesce(d.dials, 0) as dials, coalesce(d.connects, 0) as connects, coalesce(x.sales, 0) as sales
from users u
left join teams t on t.id = u.team_id
left join agent_status_log s on s.user_id = u.id and s.ended_at is null
left join lateral (
    select * from calls k where k.agent_id = u.id and k.ended_at is null order by k.created_at desc limit 1
) c on true
left join customers cu on cu.id = c.customer_id
left join campaigns cp on cp.id = c.campaign_id
left join lateral (
    select count(*) as dials, count(k.answered_at) as connects from calls k
    where k.agent_id = u.id and k.direction = 'outbound' and k.created_at >= $1
) d on true
left join lateral (
    select count(*) as sales from call_dispositions cd join dispositions di on di.code = cd.code and di.sale
    where cd.agent_id = u.id and cd.created_at >= $1
) x on true
where u.active and (u.role = 'agent' or s.id is not null)
  and ($2::bigint[] is null or u.id = any($2))
  and ($3::bigint[] is null or u.team_id = any($3))
order by t.name nulls last, u.username
"""

# An abandoned call: answered in a predictive campaign and never given to an agent (no agent on
# the row), or closed by the dialer with hangup_cause 'abandoned'. The rate is abandoned /
# answered, today and over the 30 days the cap is measured on (issue #5).
_CAMPAIGNS = """
select cp.id, cp.name,
       count(k.answered_at) filter (where k.created_at >= $1) as answered_today,
       count(*) filter (where k.created_at >= $1 and k.answered_at is not null
                        and (k.agent_id is null or k.hangup_cause = 'abandoned')) as abandoned_today,
       count(k.answered_at) as answered_30d,
       count(*) filter (where k.answered_at is not null
                        and (k.agent_id is null or k.hangup_cause = 'abandoned')) as abandoned_30d
from campaigns cp
left join calls k on k.campaign_id = cp.id and k.created_at >= $2
where cp.active and cp.dialing_mode = 'predictive' and ($3::bigint[] is null or cp.id = any($3))
group by cp.id order by cp.name
"""


def day_start(now: dt.datetime, time_zone) -> dt.datetime:
    """Midnight of `now`'s day in the reports' time zone (today's counts start there)."""
    local = now.astimezone(time_zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def agents(conn: asyncpg.Connection, *, since: dt.datetime, ids: list[int] | None = None,
                 teams: list[int] | None = None) -> list[dict]:
    rows = await conn.fetch(_AGENTS, since, ids, teams)
    return [dict(r.items()) for r in rows]


async def campaigns(conn: asyncpg.Connection, *, since: dt.datetime, now: dt.datetime,
                    ids: list[int] | None = None) -> list[dict]:
    rows = await conn.fetch(_CAMPAIGNS, since, now - dt.timedelta(days=30), ids)
    out = []
    for r in rows:
        row = dict(r.items())
        row["rate_today"] = _rate(row["abandoned_today"], row["answered_today"])
        row["rate_30d"] = _rate(row["abandoned_30d"], row["answered_30d"])
        out.append(row)
    return out


def _rate(abandoned: int, answered: int) -> float:
    return abandoned / answered if answered else 0.0


async def supervised_teams(conn: asyncpg.Connection, user: dict) -> list[int] | None:
    """The teams `user` may watch on the floor; None: every team (and agents with no team).

    Admins watch everything. A supervisor watches the teams assigned to them in
    reviewer_teams (the same assignment QA review uses) plus their own team
    (users.team_id); a supervisor with neither watches everything, as a
    company without teams expects. Anyone else watches nothing ([])."""
    if user["role"] == "admin":
        return None
    if user["role"] != "supervisor":
        return []
    teams = {r["team_id"] for r in await conn.fetch(
        "select team_id from reviewer_teams where reviewer_id = $1", user["id"])}
    if user.get("team_id") is not None:
        teams.add(user["team_id"])
    return sorted(teams) or None


async def call_owner(conn: asyncpg.Connection, call_id: str) -> dict | None:
    """The agent and team of a call (to route a live alert to the supervisors who watch it)."""
    row = await conn.fetchrow(
        """select k.agent_id, u.team_id, coalesce(nullif(u.display_name, ''), u.username) as agent
           from calls k left join users u on u.id = k.agent_id where k.id = $1::uuid""", call_id)
    return None if row is None else dict(row.items())
