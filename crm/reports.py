"""Report queries: the sales funnel, quality and service, cost and marketing effect.

Every report takes a date range (inclusive, days in reports.time_zone) and a
grouping (agent, team, campaign, source, day, week, month) and returns one row
per group plus a total row computed on its own (a customer who churns counts
once in the total even when two agents sold to them). Call figures and agent
status seconds come from the daily/monthly rollups (crm/report_rollup.py),
customers active at a range's start from the churn rollup
(crm/report_churn.py), all refreshed before each read; the smaller tables
(complaints, surveys, follow-ups, leads, the range's churned customers) are
read directly. What each figure means: crm/report_definitions.py.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import asyncpg

from crm import report_churn, report_rollup
from crm.errors import UserError
from crm.report_definitions import GROUPINGS, REPORTS

TIME_GROUPINGS = ("day", "week", "month")
MAX_DAYS = 3700  # ten years: a range past that is a typo, not a report
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class ReportSettings:
    time_zone: str = "UTC"
    effective_seconds: float = 30.0
    trunk_cost_per_minute: Decimal = Decimal("0")
    agent_hourly_cost: Decimal = Decimal("0")
    lead_costs: dict[str, Decimal] = field(default_factory=dict)


def parse_money(value: str, name: str) -> Decimal:
    """A non-negative decimal amount; ValueError naming the setting otherwise."""
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"{name}: expected a decimal amount like \"0.12\", got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name}: must be a non-negative amount, got {value!r}")
    return amount


def parse_lead_costs(entries: list[str], name: str = "reports.lead_costs") -> dict[str, Decimal]:
    """["trade show=12.50", ...] -> {"trade show": Decimal("12.50")}."""
    costs = {}
    for entry in entries:
        channel, sep, amount = entry.rpartition("=")
        if not sep or not channel.strip():
            raise ValueError(f"{name}: entries look like \"channel=amount\", got {entry!r}")
        costs[channel.strip()] = parse_money(amount, name)
    return costs


def report_settings(section) -> ReportSettings:
    """From the [reports] settings section (telesales/settings.py checks it at start)."""
    return ReportSettings(
        time_zone=section.time_zone,
        effective_seconds=float(section.effective_conversation_seconds),
        trunk_cost_per_minute=parse_money(section.trunk_cost_per_minute, "reports.trunk_cost_per_minute"),
        agent_hourly_cost=parse_money(section.agent_hourly_cost, "reports.agent_hourly_cost"),
        lead_costs=parse_lead_costs(section.lead_costs),
    )


@dataclass(frozen=True)
class Period:
    first: dt.date
    last: dt.date  # inclusive

    def buckets(self, by: str) -> list[dt.date]:
        """Start days of the day/week/month buckets, the first clipped to the range."""
        out, day = [], self.first
        while day <= self.last:
            out.append(day)
            if by == "day":
                day += dt.timedelta(days=1)
            elif by == "week":
                day += dt.timedelta(days=7 - day.weekday())
            else:
                day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return out


def check_request(name: str, first: dt.date, last: dt.date, by: str) -> Period:
    if name not in REPORTS:
        raise UserError(f"unknown report {name!r}; reports: {', '.join(REPORTS)}", fields=["name"])
    if by not in GROUPINGS:
        raise UserError(f"by must be one of {', '.join(GROUPINGS)}, got {by!r}", fields=["by"])
    if last < first:
        raise UserError("to must not be before from", fields=["from", "to"])
    if (last - first).days > MAX_DAYS:
        raise UserError(f"a report covers at most {MAX_DAYS} days", fields=["from", "to"])
    return Period(first, last)


def check_time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


# --- SQL building -------------------------------------------------------------

def _numbered(sql: str, params: dict) -> tuple[str, list]:
    """`:name` placeholders -> $n (each name once in args); `::type` casts are left alone."""
    order: list[str] = []

    def number(m: re.Match) -> str:
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    text = re.sub(r"(?<![:\w]):([a-z_]+)", number, sql)
    return text, [params[n] for n in order]


_JOINS = """left join users u on u.id = f.agent_id
left join teams t on t.id = u.team_id
left join campaigns cp on cp.id = f.campaign_id"""


def _time_key(by: str, day_expr: str) -> str:
    if by == "day":
        return day_expr
    return f"greatest(date_trunc('{by}', {day_expr})::date, :first)"


def _key(by: str) -> tuple[str, str]:
    """(key, label) over a fact relation f(agent_id, campaign_id, source, day) joined with _JOINS."""
    if by == "total":
        return "'total'", "'Total'"
    if by == "agent":
        return "coalesce(f.agent_id, 0)::text", "coalesce(nullif(u.display_name, ''), u.username, '(none)')"
    if by == "team":
        return "coalesce(u.team_id, 0)::text", "coalesce(t.name, '(no team)')"
    if by == "campaign":
        return "coalesce(f.campaign_id, 0)::text", "coalesce(cp.name, '(none)')"
    if by == "source":
        return "coalesce(f.source, '')", "coalesce(nullif(f.source, ''), '(none)')"
    key = f"{_time_key(by, 'f.day')}::text"
    return key, key


def _with_total(by: str) -> tuple[str, str, str]:
    """(key, label, group by) where the grouping sets add the total row (key 'total') in the same scan."""
    if by == "total":
        return "'total'", "'Total'", "()"
    key, label = _key(by)
    return (
        f"case when grouping({key}) = 1 then 'total' else {key} end",
        f"case when grouping({key}) = 1 then 'Total' else {label} end",
        f"grouping sets (({key}, {label}), ())",
    )


async def _grouped(conn, facts: str, select: str, by: str, params: dict, where: str = "true") -> dict[str, dict]:
    key, label, group_by = _with_total(by)
    sql = f"""with f as ({facts})
select {key} as key, {label} as label, {select}
from f {_JOINS}
where {where}
group by {group_by}"""
    text, args = _numbered(sql, params)
    return {r["key"]: dict(r.items()) for r in await conn.fetch(text, *args)}


def _merge(target: dict[str, dict], part: dict[str, dict]) -> None:
    for key, row in part.items():
        target.setdefault(key, {"key": key, "label": row["label"]}).update(row)


_START = "(:first::date)::timestamp at time zone :tz"
_END = "(:last::date + 1)::timestamp at time zone :tz"


# --- the funnel ----------------------------------------------------------------

_CALL_COLUMNS = "agent_id, campaign_id, source, " + ", ".join(report_rollup.CALL_SUMS)
_AGENT_CALL_COLUMNS = "agent_id, null::bigint as campaign_id, null::text as source, " + ", ".join(
    report_rollup.CALL_SUMS)


def _call_facts(by: str) -> str:
    """Groupings that need no campaign or source read the per-agent rollup (far fewer rows)."""
    if by in ("campaign", "source"):
        return _rollup_facts("report_call_daily", _CALL_COLUMNS, by)
    return _rollup_facts("report_call_agent_daily", _AGENT_CALL_COLUMNS, by)
_STATUS_COLUMNS = "agent_id, null::bigint as campaign_id, null::text as source, " + ", ".join(
    report_rollup.STATUS_SUMS
)


def _rollup_facts(daily: str, columns: str, by: str) -> str:
    """Rows of a rollup over the range: whole months from the monthly table (a year is 12 rows per
    key, not 365), the days at either end from the daily one. Day and week groupings read days only."""
    monthly = daily.replace("daily", "monthly")
    # Two index ranges (before and after the whole months), not the whole range filtered.
    days = f"""select day, {columns} from {daily}
where (day >= :first and day < :months_from) or (day >= :months_to and day <= :last)"""
    if by in ("day", "week"):
        return f"select day, {columns} from {daily} where day between :first and :last"
    return f"""{days}
union all
select month as day, {columns} from {monthly} where month >= :months_from and month < :months_to"""


def _whole_months(first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
    """[from, to) of the calendar months that lie wholly inside first..last (empty: from == to)."""

    def next_month(day: dt.date) -> dt.date:
        return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

    start = first if first.day == 1 else next_month(first)
    end = next_month(last) if (last + dt.timedelta(days=1)).day == 1 else last.replace(day=1)
    return (start, end) if start < end else (first, first)


_FUNNEL_SUMS = """sum(f.dials)::bigint as dials, sum(f.connects)::bigint as connects,
sum(f.effective)::bigint as effective, sum(f.intents)::bigint as intents, sum(f.sales)::bigint as sales,
sum(f.revenue) as revenue, sum(f.handled)::bigint as handled,
sum(f.talk_seconds) as talk_seconds, sum(f.wrap_seconds) as wrap_seconds"""

_STATUS_SUMS = """sum(f.pause_seconds) as pause_seconds, sum(f.ready_seconds) as ready_seconds,
sum(f.logged_in_seconds) as logged_in_seconds"""

# Churn (crm/report_churn.py): active customers at the start of the range from the churn rollup;
# churned from the customers whose churn falls in the range, each counted once per group.
_CHURNED_FACTS = f"""select r.customer_id, nullif(k.agent_id, 0) as agent_id, nullif(k.campaign_id, 0) as campaign_id,
    nullif(k.source, '') as source
from report_customers r join report_customer_keys k on k.customer_id = r.customer_id
where r.ended >= {_START} and r.ended < {_END} and k.first_order_at < {_START}"""

# By period: the customers who churned in the range, by the bucket of their churn; counted when they
# began before that bucket.
_CHURNED_BY_TIME = f"""select {{ended_bucket}}::text as key, count(*) filter (
           where r.began < {_START} or {{began_bucket}} < {{ended_bucket}}) as churned
from report_customers r where r.ended >= {_START} and r.ended < {_END}
group by 1"""

_DIM_COLUMNS = {
    "agent": "nullif(key, '0')::bigint as agent_id, null::bigint as campaign_id, null::text as source",
    "campaign": "null::bigint as agent_id, nullif(key, '0')::bigint as campaign_id, null::text as source",
    "source": "null::bigint as agent_id, null::bigint as campaign_id, nullif(key, '') as source",
}


async def _active_by_key(conn, period: Period, by: str, params: dict) -> dict[str, dict]:
    """{key: {label, active_customers}} of the range's start, the total row included."""
    total = (await report_churn.active_at(conn, "total", period.first)).get("", 0)
    rows = {"total": {"key": "total", "label": "Total", "active_customers": total}}
    if by not in report_churn.DIMS or by == "total":
        return rows
    active = await report_churn.active_at(conn, by, period.first)
    if by == "team":  # the key is the team itself
        names = {str(r["id"]): r["name"] for r in await conn.fetch(
            "select id, name from teams where id = any($1::bigint[])", [int(k) for k in active if k != "0"])}
        for key, n in active.items():
            rows[key] = {"key": key, "label": names.get(key, "(no team)"), "active_customers": n}
        return rows
    # Labels the way every other part makes them: the keys through the same joins.
    facts = f"select k.key, {_DIM_COLUMNS[by]} from unnest(:keys::text[]) k (key)"
    key, label = _key(by)
    text, args = _numbered(f"with f as ({facts}) select {key} as key, {label} as label from f {_JOINS}",
                           {**params, "keys": list(active)})
    for r in await conn.fetch(text, *args):
        rows[r["key"]] = {"key": r["key"], "label": r["label"], "active_customers": active[r["key"]]}
    return rows


async def _churn_by_time(conn, period: Period, by: str, params: dict) -> dict[str, dict]:
    """Per bucket: customers active at its start (the range's start plus the rollup's daily changes)
    and those who churned in it; the total row counts each customer once over the range."""
    active = (await report_churn.active_at(conn, "total", period.first)).get("", 0)
    change = await report_churn.daily_change(conn, period.first, period.last)
    day = "(r.{} at time zone :tz)::date"
    sql = _CHURNED_BY_TIME.format(began_bucket=_time_key(by, day.format("began")),
                                  ended_bucket=_time_key(by, day.format("ended")))
    text, args = _numbered(sql, params)
    churned = {r["key"]: r["churned"] for r in await conn.fetch(text, *args)}
    rows, buckets = {}, period.buckets(by)
    for start, end in zip(buckets, [*buckets[1:], period.last + dt.timedelta(days=1)], strict=True):
        key = start.isoformat()
        rows[key] = {"key": key, "label": key, "active_customers": active, "churned": churned.get(key, 0)}
        active += sum(change.get(start + dt.timedelta(days=i), 0) for i in range((end - start).days))
    return rows


async def _churn(conn, period: Period, by: str, params: dict) -> dict[str, dict]:
    if by in TIME_GROUPINGS:
        rows = await _churn_by_time(conn, period, by, params)
        total = await _churn(conn, period, "total", params)  # a customer counts once over the range
        return {**rows, **total}
    rows = await _active_by_key(conn, period, by, params)
    _merge(rows, await _grouped(conn, _CHURNED_FACTS, "count(distinct f.customer_id) as churned", by, params))
    return rows


def _rate(num, den) -> float | None:
    return round(float(num) / float(den), 4) if num is not None and den else None


def _seconds(value) -> float | None:
    return None if value is None else round(float(value), 1)


def _money(value) -> Decimal:
    return (value or Decimal(0)).quantize(_CENT)


def _finish_funnel(row: dict, by: str) -> dict:
    for name in ("dials", "connects", "effective", "intents", "sales", "handled", "active_customers", "churned"):
        row[name] = int(row.get(name) or 0)
    talk, wrap = row.get("talk_seconds") or 0, row.get("wrap_seconds") or 0
    status_known = by not in ("campaign", "source")
    logged = row.get("logged_in_seconds") or 0
    return {
        "key": row["key"],
        "label": row["label"],
        "dials": row["dials"],
        "connects": row["connects"],
        "connect_rate": _rate(row["connects"], row["dials"]),
        "effective": row["effective"],
        "effective_rate": _rate(row["effective"], row["connects"]),
        "intents": row["intents"],
        "intent_rate": _rate(row["intents"], row["connects"]),
        "sales": row["sales"],
        "conversion_rate": _rate(row["sales"], row["connects"]),
        "revenue": _money(row.get("revenue")),
        "active_customers": row["active_customers"],
        "churned": row["churned"],
        "churn_rate": _rate(row["churned"], row["active_customers"]),
        "handled": row["handled"],
        "talk_seconds": _seconds(talk),
        "wrap_seconds": _seconds(wrap),
        "aht_seconds": _seconds((talk + wrap) / row["handled"]) if row["handled"] else None,
        "pause_seconds": _seconds(row.get("pause_seconds") or 0) if status_known else None,
        "ready_seconds": _seconds(row.get("ready_seconds") or 0) if status_known else None,
        "logged_in_seconds": _seconds(logged) if status_known else None,
        "sales_per_hour": round(row["sales"] * 3600 / float(logged), 2) if status_known and logged else None,
    }


async def _funnel_rows(conn, period: Period, by: str, params: dict) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    _merge(rows, await _grouped(conn, _call_facts(by), _FUNNEL_SUMS, by, params))
    # Status time belongs to no campaign or source: those groupings get it in the total only.
    status_by = "total" if by in ("campaign", "source") else by
    status = _rollup_facts("report_status_daily", _STATUS_COLUMNS, status_by)
    _merge(rows, await _grouped(conn, status, _STATUS_SUMS, status_by, params))
    _merge(rows, await _churn(conn, period, by, params))
    return rows


# --- quality and service -----------------------------------------------------------

_CALL_KEYS = """c.agent_id, c.campaign_id, coalesce(l.source_channel, cu.source_channel) as source"""
_CALL_JOINS = """left join leads l on l.id = c.lead_id
left join customers cu on cu.id = c.customer_id"""

_QA_FACTS = f"""select {_CALL_KEYS}, (c.created_at at time zone :tz)::date as day,
    r.score, r.categories,
    (select count(*) from jsonb_array_elements(r.checks) x
     where x ->> 'category' = 'compliance' and x ->> 'passed' = 'false') as compliance_failed
from qa_results r join calls c on c.id = r.call_id {_CALL_JOINS}
where c.created_at >= {_START} and c.created_at < {_END}"""

_QA_SUMS = """count(*) as qa_results, avg(f.score) as qa_score, sum(f.compliance_failed)::bigint as compliance_failed"""

_COMPLAINT_FACTS = f"""select coalesce(c.agent_id, k.created_by) as agent_id, c.campaign_id,
    cu.source_channel as source, (k.received_at at time zone :tz)::date as day,
    k.received_at, k.resolved_at, k.resolve_due_at
from complaints k left join calls c on c.id = k.call_id left join customers cu on cu.id = k.customer_id
where k.received_at >= {_START} and k.received_at < {_END}"""

_COMPLAINT_SUMS = """count(*) as complaints_opened,
count(*) filter (where f.resolved_at is not null) as complaints_resolved,
count(*) filter (where f.resolve_due_at < :now and (f.resolved_at is null or f.resolved_at > f.resolve_due_at))
    as complaints_overdue,
avg(extract(epoch from f.resolved_at - f.received_at) / 3600) as resolution_hours,
avg(extract(epoch from f.resolved_at - f.resolve_due_at) / 3600) as resolution_vs_due_hours"""

_SURVEY_FACTS = f"""select c.agent_id, coalesce(s.campaign_id, c.campaign_id) as campaign_id,
    coalesce(l.source_channel, cu.source_channel) as source, (s.answered_at at time zone :tz)::date as day, s.score
from survey_answers s left join calls c on c.id = s.call_id left join leads l on l.id = c.lead_id
left join customers cu on cu.id = s.customer_id
where s.score is not null and s.answered_at >= {_START} and s.answered_at < {_END}"""

_SURVEY_SUMS = "count(*) as survey_answers, avg(f.score) as survey_score"

_CALLBACK_FACTS = f"""select coalesce(fu.owner_agent_id, fu.created_by) as agent_id, l.campaign_id,
    coalesce(l.source_channel, cu.source_channel) as source, (fu.due_at at time zone :tz)::date as day, fu.status
from follow_ups fu left join leads l on l.id = fu.lead_id left join customers cu on cu.id = fu.customer_id
where fu.due_at >= {_START} and fu.due_at < {_END}"""

_CALLBACK_SUMS = """count(*) as callbacks_due, count(*) filter (where f.status = 'done') as callbacks_kept,
count(*) filter (where f.status = 'missed') as callbacks_missed"""


async def _qa_categories(conn, by: str, params: dict) -> dict[str, dict]:
    key, label = _key(by)
    sql = f"""with f as ({_QA_FACTS}), g as (
select {key} as key, {label} as label, cat.key as category, cat.value::text::numeric as score
from f {_JOINS} cross join lateral jsonb_each(f.categories) as cat
where jsonb_typeof(cat.value) = 'number')
select key, label, category, avg(score) as score from g group by 1, 2, 3
union all
select 'total', 'Total', category, avg(score) from g group by 3
order by 3"""
    text, args = _numbered(sql, params)
    out: dict[str, dict] = {}
    for r in await conn.fetch(text, *args):
        row = out.setdefault(r["key"], {"label": r["label"], "qa_categories": {}})
        row["qa_categories"][r["category"]] = round(float(r["score"]), 1)
    return out


def _round(value, places: int = 1) -> float | None:
    return None if value is None else round(float(value), places)


def _finish_quality(row: dict) -> dict:
    kept, missed = int(row.get("callbacks_kept") or 0), int(row.get("callbacks_missed") or 0)
    return {
        "key": row["key"],
        "label": row["label"],
        "qa_results": int(row.get("qa_results") or 0),
        "qa_score": _round(row.get("qa_score")),
        "qa_categories": row.get("qa_categories", {}),
        "compliance_failed": int(row.get("compliance_failed") or 0),
        "complaints_opened": int(row.get("complaints_opened") or 0),
        "complaints_resolved": int(row.get("complaints_resolved") or 0),
        "complaints_overdue": int(row.get("complaints_overdue") or 0),
        "resolution_hours": _round(row.get("resolution_hours")),
        "resolution_vs_due_hours": _round(row.get("resolution_vs_due_hours")),
        "survey_answers": int(row.get("survey_answers") or 0),
        "survey_score": _round(row.get("survey_score"), 2),
        "callbacks_due": int(row.get("callbacks_due") or 0),
        "callbacks_kept": kept,
        "callbacks_missed": missed,
        "callback_kept_rate": _rate(kept, kept + missed),
    }


async def _quality_rows(conn, period: Period, by: str, params: dict) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for facts, sums in ((_QA_FACTS, _QA_SUMS), (_COMPLAINT_FACTS, _COMPLAINT_SUMS),
                        (_SURVEY_FACTS, _SURVEY_SUMS), (_CALLBACK_FACTS, _CALLBACK_SUMS)):
        _merge(rows, await _grouped(conn, facts, sums, by, params))
    _merge(rows, await _qa_categories(conn, by, params))
    return rows


# --- cost and marketing effect -------------------------------------------------------

_LEAD_FACTS = f"""select l.owner_agent_id as agent_id, l.campaign_id, l.source_channel as source,
    (l.created_at at time zone :tz)::date as day,
    coalesce(li.cost_per_lead, lc.cost, 0) as cost
from leads l left join lead_imports li on li.id = l.import_id
left join unnest(:cost_sources::text[], :cost_amounts::numeric[]) as lc (source, cost) on lc.source = l.source_channel
where l.created_at >= {_START} and l.created_at < {_END}"""

_LEAD_SUMS = "count(*) as leads, sum(f.cost) as lead_cost"


def _finish_cost(row: dict, s: ReportSettings) -> dict:
    talk, wrap = Decimal(row.get("talk_seconds") or 0), Decimal(row.get("wrap_seconds") or 0)
    minutes = talk / 60
    hours = (talk + wrap) / 3600
    telephony = _money(minutes * s.trunk_cost_per_minute)
    agent = _money(hours * s.agent_hourly_cost)
    leads_cost = _money(row.get("lead_cost"))
    total = telephony + agent + leads_cost
    revenue = _money(row.get("revenue"))
    connects, sales = int(row.get("connects") or 0), int(row.get("sales") or 0)
    return {
        "key": row["key"],
        "label": row["label"],
        "dials": int(row.get("dials") or 0),
        "connects": connects,
        "sales": sales,
        "revenue": revenue,
        "telephony_minutes": round(float(minutes), 2),
        "telephony_cost": telephony,
        "agent_hours": round(float(hours), 2),
        "agent_cost": agent,
        "leads": int(row.get("leads") or 0),
        "lead_cost": leads_cost,
        "total_cost": total,
        "cost_per_contact": _money(total / connects) if connects else None,
        "cost_per_sale": _money(total / sales) if sales else None,
        "net_return": revenue - total,
        "return_ratio": _rate(revenue, total),
    }


async def _cost_rows(conn, period: Period, by: str, params: dict) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    _merge(rows, await _grouped(conn, _call_facts(by), _FUNNEL_SUMS, by, params))
    _merge(rows, await _grouped(conn, _LEAD_FACTS, _LEAD_SUMS, by, params))
    return rows


# --- entry point ----------------------------------------------------------------------

_ROWS = {"funnel": _funnel_rows, "quality": _quality_rows, "cost": _cost_rows}


def _finish(name: str, row: dict, by: str, s: ReportSettings) -> dict:
    if name == "funnel":
        return _finish_funnel(row, by)
    if name == "quality":
        return _finish_quality(row)
    return _finish_cost(row, s)


def _order(by: str, rows: list[dict]) -> list[dict]:
    if by in TIME_GROUPINGS:
        return sorted(rows, key=lambda r: r["key"])
    return sorted(rows, key=lambda r: (r["label"].startswith("("), r["label"].lower(), r["key"]))


async def run_report(
    conn: asyncpg.Connection,
    name: str,
    first: dt.date,
    last: dt.date,
    by: str,
    settings: ReportSettings,
    *,
    now: dt.datetime | None = None,
) -> dict:
    """One report: {report, from, to, by, time_zone, rows, total, definitions}."""
    period = check_request(name, first, last, by)
    await report_rollup.refresh(conn, settings.time_zone, settings.effective_seconds)
    months_from, months_to = _whole_months(first, last)
    params = {
        "first": first,
        "last": last,
        "months_from": months_from,
        "months_to": months_to,
        "tz": settings.time_zone,
        "now": now or dt.datetime.now(dt.UTC),
        "cost_sources": list(settings.lead_costs),
        "cost_amounts": list(settings.lead_costs.values()),
    }
    rows = await _ROWS[name](conn, period, by, params)
    total = rows.pop("total", {"key": "total", "label": "Total"})
    if by in TIME_GROUPINGS:  # every period appears, even an empty one
        for day in period.buckets(by):
            rows.setdefault(day.isoformat(), {"key": day.isoformat(), "label": day.isoformat()})
    return {
        "report": name,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "by": by,
        "time_zone": settings.time_zone,
        "rows": _order(by, [_finish(name, r, by, settings) for r in rows.values()]),
        "total": _finish(name, total, "total", settings),
        "definitions": REPORTS[name],
    }
