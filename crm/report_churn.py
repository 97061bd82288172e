"""The churn rollup: customers active at a period's start without counting every customer ever.

report_customers / report_customer_keys (kept by triggers, 0004) hold each
customer's first order per agent, campaign and lead source and when they
churned (a team is its agents' team now: moving an agent rebuilds this
rollup). report_churn_daily turns them into two events per customer and group:
a start on the day of the first order in that group and a stop on the day they
churned (only if after that first order: churned before, never active there).
Active at the start of day S = the starts minus the stops before S: whole months
from report_churn_monthly plus the days of S's month, a few thousand rows
however long the history. Churned in a range comes from the customers who
churned in it (an index on report_customers.ended), so it grows with the range's
churn, not with the history. The trigger function report_customers_refresh (0014)
marks the old and new days of every customer it rewrites in
report_churn_dirty_days; crm/report_rollup.refresh() recomputes those days.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

DIMS = ("agent", "team", "campaign", "source", "total")
KEYS = ("dim", "key")
SUMS = ("starts", "stops")

# $1 time zone; {customers}: which customers to count, {day_filter}: which days' rows to write.
_ROWS_SQL = """
with g as (
    select k.customer_id, d.dim, d.key, min(k.first_order_at) as f
    from report_customer_keys k
    left join users u on u.id = k.agent_id
    cross join lateral (values ('agent', k.agent_id::text), ('team', coalesce(u.team_id, 0)::text),
                               ('campaign', k.campaign_id::text), ('source', k.source), ('total', '')) d (dim, key)
    {customers}
    group by 1, 2, 3
), v as (
    select g.dim, g.key, (g.f at time zone $1)::date as f_day, (r.ended at time zone $1)::date as x_day
    from g join report_customers r on r.customer_id = g.customer_id
    where r.ended is null or r.ended >= g.f
), ev as (
    select dim, key, f_day as day, 1 as starts, 0 as stops from v
    union all
    select dim, key, x_day, 0, 1 from v where x_day is not null
)
insert into report_churn_daily (dim, day, key, starts, stops)
select dim, day, key, sum(starts), sum(stops) from ev {day_filter} group by 1, 2, 3
"""

# Customers with a first order or a churn on one of the days $2: the only ones whose events move.
# Fetched first, so the events are computed for those few by index, never for everyone.
_DAY_CANDIDATES = """
select k.customer_id from unnest($2::date[]) t (day)
join report_customer_keys k on k.first_order_at >= t.day::timestamp at time zone $1
                           and k.first_order_at < (t.day + 1)::timestamp at time zone $1
union
select r.customer_id from unnest($2::date[]) t (day)
join report_customers r on r.ended >= t.day::timestamp at time zone $1
                       and r.ended < (t.day + 1)::timestamp at time zone $1"""

_MONTHS_SQL = """insert into report_churn_monthly (dim, month, key, starts, stops)
select dim, date_trunc('month', day)::date, key, sum(starts), sum(stops) from report_churn_daily group by 1, 2, 3"""


async def rebuild(conn: asyncpg.Connection, time_zone: str) -> None:
    """Every day from scratch (caller holds the refresh lock, in a transaction)."""
    await conn.execute("truncate report_churn_daily, report_churn_monthly")
    await conn.execute("delete from report_churn_dirty_days")
    await conn.execute(_ROWS_SQL.format(customers="", day_filter=""), time_zone)
    await conn.execute(_MONTHS_SQL)
    await conn.execute("update report_rollup_state set churn_built = true")


async def recompute(conn: asyncpg.Connection, days: list[dt.date], time_zone: str, replace_days) -> None:
    """The rows of `days` only (replace_days: report_rollup._replace_days, which moves the months)."""

    async def fill() -> None:
        customers = [r[0] for r in await conn.fetch(_DAY_CANDIDATES, time_zone, days)]
        sql = _ROWS_SQL.format(customers="where k.customer_id = any($3::bigint[])",
                               day_filter="where day = any($2::date[])")
        await conn.execute(sql, time_zone, days, customers)

    await replace_days(conn, "report_churn_daily", KEYS, SUMS, days, fill)


# --- reading -----------------------------------------------------------------------

_ACTIVE_SQL = """select key, sum(starts - stops)::bigint as active from (
    select key, starts, stops from report_churn_monthly where dim = $1 and month < $2
    union all
    select key, starts, stops from report_churn_daily where dim = $1 and day >= $2 and day < $3
) x group by key"""


async def active_at(conn: asyncpg.Connection, dim: str, day: dt.date) -> dict[str, int]:
    """{key: customers active at the start of `day`} for one dimension ('total': key '')."""
    rows = await conn.fetch(_ACTIVE_SQL, dim, day.replace(day=1), day)
    return {r["key"]: int(r["active"]) for r in rows}


async def daily_change(conn: asyncpg.Connection, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    """{day: starts - stops of everyone} for the days first..last."""
    rows = await conn.fetch("""select day, starts - stops as change from report_churn_daily
                               where dim = 'total' and day between $1 and $2""", first, last)
    return {r["day"]: int(r["change"]) for r in rows}
