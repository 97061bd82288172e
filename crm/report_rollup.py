"""The daily call rollup behind the funnel and cost reports, and how it stays correct.

report_call_daily holds one row per report day, agent, campaign and lead source
channel, report_status_daily one per day and agent (agent status seconds);
report_call_monthly and report_status_monthly hold the same sums per month,
for long ranges. Triggers on calls, call_dispositions, qa_results, orders and leads
(crm/migrations/0004_reports.sql) add the day of every call whose figures may
have changed to report_dirty_days, in the writer's own transaction; refresh()
recomputes exactly those days from the raw tables before a report reads the
rollup. A late disposition or QA result therefore shows in the next report,
and a day nobody touched is never recomputed. When the settings the rollup
depends on (report time zone, effective-conversation seconds) change, or a
disposition code's flags change, the whole rollup is rebuilt once.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import asyncpg

# Any constant; serialises refreshes so two readers never recompute one day twice at once.
_REFRESH_LOCK = 7_250_804

# The rows of one day, from the raw tables: {day}, {start}, {end} are literals (the planner then
# knows the day holds a few thousand calls and looks each one's rows up by index); $1 effective seconds.
_DAY_SQL = """
insert into report_call_daily
select {day}::date,
       coalesce(c.agent_id, 0),
       coalesce(c.campaign_id, 0),
       coalesce(l.source_channel, cu.source_channel, ''),
       count(*) filter (where c.direction = 'outbound'),
       count(*) filter (where c.direction = 'outbound' and d.human_answered),
       count(*) filter (where c.direction = 'outbound' and d.human_answered and q.customer_talk_s >= $1),
       count(*) filter (where c.direction = 'outbound' and d.intent),
       count(*) filter (where c.direction = 'outbound' and d.sale),
       coalesce(sum(o.revenue) filter (where c.direction = 'outbound'), 0),
       count(*) filter (where d.human_answered),
       coalesce(sum(c.duration_seconds) filter (where d.human_answered), 0),
       coalesce(sum(greatest(extract(epoch from cd.created_at - c.ended_at), 0))
                filter (where d.human_answered), 0)
from calls c
left join dispositions d on d.code = c.disposition
left join leads l on l.id = c.lead_id
left join customers cu on cu.id = c.customer_id
left join call_dispositions cd on cd.call_id = c.id
left join lateral (
    select max((r.metrics ->> 'customer_talk_s')::numeric) as customer_talk_s
    from qa_results r where r.call_id = c.id
) q on true
left join lateral (
    select sum(od.total) as revenue from orders od where od.call_id = c.id and od.status <> 'cancelled'
) o on true
where c.created_at >= {start}::timestamptz and c.created_at < {end}::timestamptz
group by 2, 3, 4
"""

# Status seconds of the given days: closed intervals cut at the day's bounds. $1 days, $2 time zone.
_STATUS_DAYS_SQL = """
insert into report_status_daily
select days.day, s.user_id,
       coalesce(sum(x.seconds) filter (where s.status = 'paused'), 0),
       coalesce(sum(x.seconds) filter (where s.status = 'ready'), 0),
       coalesce(sum(x.seconds), 0)
from unnest($1::date[]) as days (day)
join agent_status_log s
  on s.ended_at is not null
 and tstzrange(s.started_at, s.ended_at)
     && tstzrange(days.day::timestamp at time zone $2, (days.day + 1)::timestamp at time zone $2)
cross join lateral (
    select extract(epoch from least(s.ended_at, (days.day + 1)::timestamp at time zone $2)
                             - greatest(s.started_at, days.day::timestamp at time zone $2)) as seconds
) x
group by 1, 2
"""

CALL_SUMS = ("dials", "connects", "effective", "intents", "sales", "revenue", "handled", "talk_seconds",
             "wrap_seconds")
STATUS_SUMS = ("pause_seconds", "ready_seconds", "logged_in_seconds")


def _months_sql(table: str, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    """Rebuild the monthly rows of the months in $1 from the daily rows."""
    key_list = ", ".join(f"d.{k}" for k in keys)
    return f"""insert into {table.replace('daily', 'monthly')}
select m.month, {key_list}, {", ".join(f"sum(d.{s})" for s in sums)}
from unnest($1::date[]) as m (month)
join {table} d on d.day >= m.month and d.day < (m.month + interval '1 month')::date
group by m.month, {key_list}"""


# The same rows for every day at once (a rebuild): hash joins over the whole tables instead of a
# lookup per call. $1 time zone, $2 effective seconds.
_ALL_DAYS_SQL = (
    _DAY_SQL.replace("select {day}::date,", "select (c.created_at at time zone $1)::date,")
    .replace("where c.created_at >= {start}::timestamptz and c.created_at < {end}::timestamptz\n", "")
    .replace("group by 2, 3, 4", "group by 1, 2, 3, 4")
    .replace("""left join lateral (
    select max((r.metrics ->> 'customer_talk_s')::numeric) as customer_talk_s
    from qa_results r where r.call_id = c.id
) q on true""", """left join (
    select r.call_id, max((r.metrics ->> 'customer_talk_s')::numeric) as customer_talk_s
    from qa_results r group by r.call_id
) q on q.call_id = c.id""")
    .replace("""left join lateral (
    select sum(od.total) as revenue from orders od where od.call_id = c.id and od.status <> 'cancelled'
) o on true""", """left join (
    select od.call_id, sum(od.total) as revenue from orders od where od.status <> 'cancelled' group by od.call_id
) o on o.call_id = c.id""")
    .replace(">= $1", ">= $2")
)
assert "lateral" not in _ALL_DAYS_SQL and "{" not in _ALL_DAYS_SQL, "rebuild SQL no longer matches _DAY_SQL"


async def _recompute(conn: asyncpg.Connection, days: list[dt.date], time_zone: str, effective_s: float) -> None:
    await conn.execute("delete from report_call_daily where day = any($1::date[])", days)
    zone = zoneinfo.ZoneInfo(time_zone)
    for day in days:
        start = dt.datetime.combine(day, dt.time(), zone)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
        # isoformat() of dates and aware datetimes: nothing but digits, '-', ':', 'T', '+'.
        sql = _DAY_SQL.format(day=f"'{day.isoformat()}'", start=f"'{start.isoformat()}'", end=f"'{end.isoformat()}'")
        await conn.execute(sql, Decimal(str(effective_s)))
    await conn.execute("delete from report_status_daily where day = any($1::date[])", days)
    await conn.execute(_STATUS_DAYS_SQL, days, time_zone)
    months = sorted({d.replace(day=1) for d in days})
    await conn.execute("delete from report_call_monthly where month = any($1::date[])", months)
    await conn.execute(_months_sql("report_call_daily", ("agent_id", "campaign_id", "source"), CALL_SUMS), months)
    await conn.execute("delete from report_status_monthly where month = any($1::date[])", months)
    await conn.execute(_months_sql("report_status_daily", ("agent_id",), STATUS_SUMS), months)


async def _all_days(conn: asyncpg.Connection, time_zone: str) -> list[dt.date]:
    first, last = await conn.fetchrow(
        """select (min(at) at time zone $1)::date, (max(at) at time zone $1)::date
           from (select min(created_at) as at from calls union all select max(created_at) from calls
                 union all select min(started_at) from agent_status_log
                 union all select max(ended_at) from agent_status_log) t""",
        time_zone,
    )
    if first is None:
        return []
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


async def rebuild(conn: asyncpg.Connection, time_zone: str, effective_s: float) -> None:
    """Recompute every day (after a settings change, or for a fresh rollup)."""
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _REFRESH_LOCK)
        await conn.execute("truncate report_call_daily, report_status_daily, report_call_monthly, "
                           "report_status_monthly")
        # The churn tables are kept by triggers; rebuilt too, for data loaded with triggers off.
        await conn.execute("select report_customers_refresh(null)")
        await conn.execute("delete from report_dirty_days")
        await conn.execute(_ALL_DAYS_SQL, time_zone, Decimal(str(effective_s)))
        days = await _all_days(conn, time_zone)
        await conn.execute(_STATUS_DAYS_SQL, days, time_zone)
        months = sorted({d.replace(day=1) for d in days})
        await conn.execute(_months_sql("report_call_daily", ("agent_id", "campaign_id", "source"), CALL_SUMS),
                           months)
        await conn.execute(_months_sql("report_status_daily", ("agent_id",), STATUS_SUMS), months)
        await conn.execute(
            "update report_rollup_state set time_zone = $1, effective_seconds = $2, stale = false",
            time_zone,
            Decimal(str(effective_s)),
        )


async def refresh(conn: asyncpg.Connection, time_zone: str, effective_s: float) -> int:
    """Bring the rollup up to date; returns the number of days recomputed (-1: full rebuild)."""
    state = await conn.fetchrow("select * from report_rollup_state")
    if state["stale"] or state["time_zone"] != time_zone or state["effective_seconds"] != Decimal(str(effective_s)):
        await rebuild(conn, time_zone, effective_s)
        return -1
    if not await conn.fetchval("select exists (select 1 from report_dirty_days)"):
        return 0
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _REFRESH_LOCK)
        # Deleting the marks first: a writer that marks one of these days again while we
        # recompute waits for this transaction, then leaves its mark for the next refresh.
        days = [r["day"] for r in await conn.fetch("delete from report_dirty_days returning day")]
        if days:
            await _recompute(conn, days, time_zone, effective_s)
    return len(days)
