"""The daily call rollup behind the funnel and cost reports, and how it stays correct.

report_call_daily holds one row per report day, agent, campaign and lead source
channel, report_call_agent_daily the same sums per day and agent only (what the
agent, team and time groupings read), report_status_daily one row per day and
agent (agent status seconds); the *_monthly tables hold the same sums per month,
for long ranges. Triggers (crm/migrations/0004_reports.sql, 0014) mark, in the
writer's own transaction, what may have changed: a call, its disposition, QA
result or order marks the call's day and agent (report_dirty_agent_days), a
status interval its days (report_status_dirty_days), a lead's source change
every day and agent of its calls; report_dirty_days (a whole day) is kept for
anything else. refresh() recomputes exactly those rows from the raw tables
before a report reads the rollup, and moves their months' rows by the
difference (a month is never summed again). A late disposition therefore shows
in the next report and costs one agent's calls of one day. The churn rollup
(crm/report_churn.py) is refreshed the same way from its own dirty days. When
the settings the rollup depends on (report time zone, effective-conversation
seconds) change, or a disposition code's flags change, the whole rollup is
rebuilt once.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import asyncpg

from crm import report_churn

# Any constant; serialises refreshes so two readers never recompute one day twice at once.
_REFRESH_LOCK = 7_250_804

# The rows of one day, from the raw tables: {day}, {start}, {end} are literals (the planner then
# knows the day holds a few thousand calls and looks each one's rows up by index, the lead's and
# customer's source too: lateral, so a late disposition never hashes all leads); $1 effective seconds;
# {agents}: empty, or a filter to some agents' calls (a late disposition recomputes its agent only).
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
left join lateral (select l.source_channel from leads l where l.id = c.lead_id) l on true
left join lateral (select cu.source_channel from customers cu where cu.id = c.customer_id) cu on true
left join call_dispositions cd on cd.call_id = c.id
left join lateral (
    select max((r.metrics ->> 'customer_talk_s')::numeric) as customer_talk_s
    from qa_results r where r.call_id = c.id
) q on true
left join lateral (
    select sum(od.total) as revenue from orders od where od.call_id = c.id and od.status <> 'cancelled'
) o on true
where c.created_at >= {start}::timestamptz and c.created_at < {end}::timestamptz{agents}
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
CALL_KEYS = ("agent_id", "campaign_id", "source")


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
    .replace("where c.created_at >= {start}::timestamptz and c.created_at < {end}::timestamptz{agents}\n", "")
    .replace("left join lateral (select l.source_channel from leads l where l.id = c.lead_id) l on true",
             "left join leads l on l.id = c.lead_id")
    .replace("left join lateral (select cu.source_channel from customers cu where cu.id = c.customer_id) cu on true",
             "left join customers cu on cu.id = c.customer_id")
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


def _month_delta_sql(table: str, keys: tuple[str, ...], sums: tuple[str, ...], sign: str, where: str) -> str:
    """Add (sign '+') or take away (sign '-') the daily rows `where` selects to/from their months'
    rows: a recomputed day changes its month by its own difference, never by re-summing the month."""
    monthly = table.replace("daily", "monthly")
    key_list = ", ".join(keys)
    return f"""insert into {monthly} as m (month, {key_list}, {", ".join(sums)})
select date_trunc('month', d.day)::date, {", ".join(f"d.{k}" for k in keys)},
       {", ".join(f"{sign}sum(d.{s})" for s in sums)}
from {table} d where {where}
group by 1, {", ".join(f"d.{k}" for k in keys)}
on conflict ({"month, " + key_list if "churn" not in table else "dim, month, key"}) do update
set {", ".join(f"{s} = m.{s} + excluded.{s}" for s in sums)}"""


def _month_prune_sql(table: str, sums: tuple[str, ...]) -> str:
    """Month rows whose sums went to zero: gone, as if they had been summed from scratch."""
    return f"""delete from {table.replace('daily', 'monthly')}
where month = any($1::date[]) and {" and ".join(f"{s} = 0" for s in sums)}"""


async def _replace_rows(conn, table: str, keys: tuple[str, ...], sums: tuple[str, ...], where: str, args: list,
                        days: list[dt.date], fill) -> None:
    """Swap the daily rows `where` selects (of `days`; fill() writes the new ones) and move their
    months by the difference."""
    months = sorted({d.replace(day=1) for d in days})
    await conn.execute(_month_delta_sql(table, keys, sums, "-", where), *args)
    await conn.execute(f"delete from {table} d where {where}", *args)
    await fill()
    await conn.execute(_month_delta_sql(table, keys, sums, "+", where), *args)
    await conn.execute(_month_prune_sql(table, sums), months)


async def _replace_days(conn, table: str, keys: tuple[str, ...], sums: tuple[str, ...], days: list[dt.date],
                        fill) -> None:
    await _replace_rows(conn, table, keys, sums, "d.day = any($1::date[])", [days], days, fill)


async def _fill_calls(conn, agent_days: dict[dt.date, list[int] | None], time_zone: str, effective_s: float) -> None:
    """Write the call rows of each day: all of its calls (None), or those of the listed agents."""
    zone = zoneinfo.ZoneInfo(time_zone)
    for day, agents in sorted(agent_days.items()):
        start = dt.datetime.combine(day, dt.time(), zone)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
        # isoformat() of dates and aware datetimes: nothing but digits, '-', ':', 'T', '+'; agents: ints.
        only = "" if agents is None else f" and coalesce(c.agent_id, 0) in ({', '.join(str(int(a)) for a in agents)})"
        sql = _DAY_SQL.format(day=f"'{day.isoformat()}'", start=f"'{start.isoformat()}'",
                              end=f"'{end.isoformat()}'", agents=only)
        await conn.execute(sql, Decimal(str(effective_s)))


# report_call_agent_daily from report_call_daily: the rows `where` selects.
_AGENT_SQL = f"""insert into report_call_agent_daily (day, agent_id, {", ".join(CALL_SUMS)})
select d.day, d.agent_id, {", ".join(f"sum(d.{s})" for s in CALL_SUMS)}
from report_call_daily d where {{where}} group by 1, 2"""


async def _replace_calls(conn, where: str, args: list, days: list[dt.date], fill) -> None:
    """The call rows `where` selects, in report_call_daily and the per-agent table, and their months."""
    await _replace_rows(conn, "report_call_daily", CALL_KEYS, CALL_SUMS, where, args, days, fill)
    await _replace_rows(conn, "report_call_agent_daily", ("agent_id",), CALL_SUMS, where, args, days,
                        lambda: conn.execute(_AGENT_SQL.format(where=where), *args))


async def _recompute_days(conn, days: list[dt.date], time_zone: str, effective_s: float) -> None:
    """Whole days: every call row and the status seconds."""
    await _replace_calls(conn, "d.day = any($1::date[])", [days], days,
                         lambda: _fill_calls(conn, dict.fromkeys(days), time_zone, effective_s))
    await _recompute_status(conn, days, time_zone)


async def _recompute_status(conn, days: list[dt.date], time_zone: str) -> None:
    await _replace_days(conn, "report_status_daily", ("agent_id",), STATUS_SUMS, days,
                        lambda: conn.execute(_STATUS_DAYS_SQL, days, time_zone))


async def _recompute_agent_days(conn, pairs: list[tuple[dt.date, int]], time_zone: str, effective_s: float) -> None:
    """The call rows of some agents on some days (a late disposition: one agent, one day)."""
    by_day: dict[dt.date, list[int]] = {}
    for day, agent in pairs:
        by_day.setdefault(day, []).append(agent)
    where = "(d.day, d.agent_id) in (select * from unnest($1::date[], $2::bigint[]))"
    args = [[d for d, _ in pairs], [a for _, a in pairs]]
    await _replace_calls(conn, where, args, list(by_day), lambda: _fill_calls(conn, by_day, time_zone, effective_s))


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
                           "report_status_monthly, report_call_agent_daily, report_call_agent_monthly")
        # The churn tables are kept by triggers; rebuilt too, for data loaded with triggers off.
        await conn.execute("select report_customers_refresh(null)")
        for marks in ("report_dirty_days", "report_dirty_agent_days", "report_status_dirty_days"):
            await conn.execute(f"delete from {marks}")
        await conn.execute(_ALL_DAYS_SQL, time_zone, Decimal(str(effective_s)))
        days = await _all_days(conn, time_zone)
        await conn.execute(_STATUS_DAYS_SQL, days, time_zone)
        months = sorted({d.replace(day=1) for d in days})
        await conn.execute(_months_sql("report_call_daily", ("agent_id", "campaign_id", "source"), CALL_SUMS),
                           months)
        await conn.execute(_months_sql("report_status_daily", ("agent_id",), STATUS_SUMS), months)
        await conn.execute(_AGENT_SQL.format(where="true"))
        await conn.execute(_months_sql("report_call_agent_daily", ("agent_id",), CALL_SUMS), months)
        await report_churn.rebuild(conn, time_zone)
        await conn.execute(
            "update report_rollup_state set time_zone = $1, effective_seconds = $2, stale = false",
            time_zone,
            Decimal(str(effective_s)),
        )


_ANY_DIRTY = " or ".join(f"exists (select 1 from {t})" for t in (
    "report_dirty_days", "report_dirty_agent_days", "report_status_dirty_days", "report_churn_dirty_days"))
_ANY_DIRTY = f"select {_ANY_DIRTY}"


async def refresh(conn: asyncpg.Connection, time_zone: str, effective_s: float) -> int:
    """Bring the rollup up to date; returns the number of days recomputed (-1: full rebuild)."""
    state = await conn.fetchrow("select * from report_rollup_state")
    if state["stale"] or state["time_zone"] != time_zone or state["effective_seconds"] != Decimal(str(effective_s)):
        await rebuild(conn, time_zone, effective_s)
        return -1
    if not state["churn_built"]:  # a database from before the churn rollup (0014): built once
        async with conn.transaction():
            await conn.execute("select pg_advisory_xact_lock($1)", _REFRESH_LOCK)
            await report_churn.rebuild(conn, time_zone)
    if not await conn.fetchval(_ANY_DIRTY):
        return 0
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _REFRESH_LOCK)
        # Deleting the marks first: a writer that marks one of these days again while we
        # recompute waits for this transaction, then leaves its mark for the next refresh.
        days = [r["day"] for r in await conn.fetch("delete from report_dirty_days returning day")]
        if days:
            await _recompute_days(conn, days, time_zone, effective_s)
        pairs = [(r["day"], r["agent_id"]) for r in await conn.fetch(
            "delete from report_dirty_agent_days returning day, agent_id") if r["day"] not in days]
        if pairs:
            await _recompute_agent_days(conn, pairs, time_zone, effective_s)
        status_days = [r["day"] for r in await conn.fetch(
            "delete from report_status_dirty_days returning day") if r["day"] not in days]
        if status_days:
            await _recompute_status(conn, status_days, time_zone)
        churn_days = [r["day"] for r in await conn.fetch("delete from report_churn_dirty_days returning day")]
        if churn_days:
            await report_churn.recompute(conn, churn_days, time_zone, _replace_days)
    return len(set(days) | {d for d, _ in pairs} | set(status_days) | set(churn_days))
