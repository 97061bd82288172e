"""The rollups stay equal to a rebuild from scratch when late changes arrive (0014: per-agent call
rows, months moved by a day's difference, the churn rollup), and each change recomputes only what it
touched."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import report_data
from report_data import D1, D2, local

from crm import dnc, orders, report_rollup, reports

SETTINGS = reports.ReportSettings(time_zone="Asia/Shanghai", effective_seconds=30)
TABLES = {
    "report_call_daily": "day, agent_id, campaign_id, source",
    "report_call_monthly": "month, agent_id, campaign_id, source",
    "report_call_agent_daily": "day, agent_id",
    "report_call_agent_monthly": "month, agent_id",
    "report_status_daily": "day, agent_id",
    "report_status_monthly": "month, agent_id",
    "report_churn_daily": "dim, day, key",
    "report_churn_monthly": "dim, month, key",
}


@pytest.fixture
async def history(conn, catalog):
    h = await report_data.build(conn, catalog)
    await _refresh(conn)  # built once; every later change is refreshed incrementally
    return h


async def _refresh(conn) -> int:
    return await report_rollup.refresh(conn, SETTINGS.time_zone, SETTINGS.effective_seconds)


async def _contents(conn) -> dict[str, list]:
    return {t: [tuple(r) for r in await conn.fetch(f"select * from {t} order by {keys}")]
            for t, keys in TABLES.items()}


async def _same_as_a_rebuild(conn) -> None:
    await _refresh(conn)
    incremental = await _contents(conn)
    await report_rollup.rebuild(conn, SETTINGS.time_zone, SETTINGS.effective_seconds)
    rebuilt = await _contents(conn)
    for table in TABLES:
        assert incremental[table] == rebuilt[table], table
    assert rebuilt["report_call_agent_daily"] and rebuilt["report_churn_monthly"]  # not comparing nothing


async def _agent(conn, report, label: str) -> dict:
    return {r["label"]: r for r in report["rows"]}[label]


async def test_a_late_disposition_recomputes_one_agent_day_and_equals_a_rebuild(conn, catalog, history):
    await report_data.record_late_disposition(conn, catalog, history)
    marks = await conn.fetch("select day, agent_id from report_dirty_agent_days")
    assert [(r["day"], r["agent_id"]) for r in marks] == [(D2, history.agents["cyd"])]
    assert await conn.fetchval("select count(*) from report_dirty_days") == 0
    assert await _refresh(conn) == 1
    await _same_as_a_rebuild(conn)


async def test_a_late_status_interval_moves_its_own_days_status_seconds(conn, history):
    ann = history.agents["ann"]
    before = await reports.run_report(conn, "funnel", D1, D2, "day", SETTINGS)
    # ann was ready 23:00 D1 - 01:00 D2 (entered late): an hour on each day, nothing else moves.
    await conn.execute("insert into agent_status_log (user_id, status, started_at, ended_at) "
                       "values ($1, 'ready', $2, $3)", ann, local(D1, 23), local(D2, 1))
    assert sorted(r[0] for r in await conn.fetch("select day from report_status_dirty_days")) == [D1, D2]
    assert await conn.fetchval("select count(*) from report_dirty_agent_days") == 0  # calls untouched
    after = await reports.run_report(conn, "funnel", D1, D2, "day", SETTINGS)
    for old, new in zip(before["rows"], after["rows"], strict=True):
        assert new["ready_seconds"] == old["ready_seconds"] + 3600.0, new["key"]
        assert new["dials"] == old["dials"] and new["sales"] == old["sales"]
    by_agent = await reports.run_report(conn, "funnel", D2, D2, "agent", SETTINGS)
    assert (await _agent(conn, by_agent, "ann"))["ready_seconds"] == 3600.0
    await _same_as_a_rebuild(conn)


async def test_a_cancellation_and_a_do_not_call_move_the_churn_rollup_like_a_rebuild(conn, history):
    d4 = D2 + dt.timedelta(days=2)
    order_id = await conn.fetchval("select id from orders where call_id = $1", history.calls[5])
    await orders.set_status(conn, order_id, "cancelled", user_id=None, reason="late", now=local(d4, 9))
    assert await conn.fetchval("select count(*) from report_churn_dirty_days") >= 2  # began and churned days
    report = await reports.run_report(conn, "funnel", d4, d4, "agent", SETTINGS)
    bob = await _agent(conn, report, "bob")
    assert (bob["active_customers"], bob["churned"]) == (1, 1)
    assert bob["revenue"] == Decimal("0.00")
    await _same_as_a_rebuild(conn)
    # a do-not-call entry for a customer who already churned changes nothing, and still equals a rebuild
    phone = await conn.fetchval("select l.phone from calls c join leads l on l.id = c.lead_id where c.id = $1",
                                history.calls[5])
    await dnc.add(conn, phone, "asked", source="customer_request", added_by=None, now=local(d4, 12))
    await _same_as_a_rebuild(conn)


async def test_a_month_range_reads_the_monthly_rollup_with_the_same_figures_as_its_days(conn, history):
    # March 2026 as one whole month (monthly rows) against its days summed (daily rows).
    month = await reports.run_report(conn, "funnel", dt.date(2026, 3, 1), dt.date(2026, 3, 31), "agent", SETTINGS)
    days = await reports.run_report(conn, "funnel", dt.date(2026, 3, 1), dt.date(2026, 3, 31), "day", SETTINGS)
    for field in ("dials", "connects", "sales", "revenue", "talk_seconds", "ready_seconds", "active_customers",
                  "churned"):
        assert month["total"][field] == days["total"][field], field


async def test_moving_an_agent_to_another_team_moves_their_customers_in_the_churn_figures(conn, history):
    d3 = D2 + dt.timedelta(days=1)

    async def teams() -> dict[str, tuple[int, int]]:
        report = await reports.run_report(conn, "funnel", d3, d3, "team", SETTINGS)
        return {r["label"]: (r["active_customers"], r["churned"]) for r in report["rows"]}

    assert (await teams())["North"] == (1, 0)  # bob's customer of call 5 (ann's churned)
    south = await conn.fetchval("select team_id from users where id = $1", history.agents["cyd"])
    await conn.execute("update users set team_id = $1 where id = $2", south, history.agents["bob"])
    assert not await conn.fetchval("select churn_built from report_rollup_state")
    moved = await teams()
    assert moved["South"] == (1, 0) and moved.get("North", (0, 0)) == (0, 0)
    await _same_as_a_rebuild(conn)
