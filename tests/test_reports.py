"""Report figures against a history whose answers were worked out by hand (tests/report_data.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import report_data
from report_data import D1, D2

from crm import orders, reports
from crm.errors import UserError

SETTINGS = reports.ReportSettings(
    time_zone="Asia/Shanghai",
    effective_seconds=30,
    trunk_cost_per_minute=Decimal("0.10"),
    agent_hourly_cost=Decimal("36.00"),
    lead_costs={"trade show": Decimal("5.00"), "referral": Decimal("2.50")},
)
NOW = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)

FUNNEL_FIELDS = ("dials", "connects", "effective", "intents", "sales", "revenue", "handled",
                 "talk_seconds", "wrap_seconds", "aht_seconds", "pause_seconds", "ready_seconds",
                 "logged_in_seconds", "sales_per_hour", "active_customers", "churned", "churn_rate")


def F(dials, connects, effective, intents, sales, revenue, handled, talk, wrap, aht,
      pause=None, ready=None, logged=None, sph=None, active=0, churned=0, churn_rate=None):
    return dict(zip(FUNNEL_FIELDS, (dials, connects, effective, intents, sales, Decimal(revenue), handled,
                                    talk, wrap, aht, pause, ready, logged, sph, active, churned, churn_rate),
                    strict=True))


# Before the late disposition of call 7 (see tests/report_data.py for the calls).
FUNNEL_BEFORE = {
    "agent": {
        "ann": F(3, 2, 1, 1, 1, "0.00", 3, 280.0, 40.0, 106.7, 900.0, 3600.0, 7200.0, 0.5, 1, 1, 1.0),
        "bob": F(2, 2, 2, 2, 1, "300.00", 2, 290.0, 60.0, 175.0, 3600.0, 0.0, 3600.0, 1.0, 1, 1, 1.0),
        "cyd": F(2, 0, 0, 0, 0, "0.00", 0, 0.0, 0.0, None, 0.0, 0.0, 0.0, None, 0, 0, None),
    },
    "team": {
        "North": F(5, 4, 3, 3, 2, "300.00", 5, 570.0, 100.0, 134.0, 4500.0, 3600.0, 10800.0, 0.67, 2, 2, 1.0),
        "South": F(2, 0, 0, 0, 0, "0.00", 0, 0.0, 0.0, None, 0.0, 0.0, 0.0, None, 0, 0, None),
    },
    "campaign": {
        "C1": F(4, 3, 2, 2, 1, "0.00", 4, 370.0, 60.0, 107.5, active=2, churned=2, churn_rate=1.0),
        "C2": F(3, 1, 1, 1, 1, "300.00", 1, 200.0, 40.0, 240.0),
    },
    "source": {
        "trade show": F(3, 2, 2, 2, 2, "300.00", 3, 420.0, 70.0, 163.3, active=1, churned=1, churn_rate=1.0),
        "referral": F(4, 2, 1, 1, 0, "0.00", 2, 150.0, 30.0, 90.0, active=1, churned=1, churn_rate=1.0),
    },
    "day": {
        "2026-03-02": F(4, 3, 2, 2, 1, "0.00", 3, 270.0, 60.0, 110.0, 2700.0, 3600.0, 9000.0, 0.4, 2, 1, 0.5),
        "2026-03-03": F(3, 1, 1, 1, 1, "300.00", 2, 300.0, 40.0, 170.0, 1800.0, 0.0, 1800.0, 2.0, 2, 2, 1.0),
    },
}
TOTAL_BEFORE = F(7, 4, 3, 3, 2, "300.00", 5, 570.0, 100.0, 134.0, 4500.0, 3600.0, 10800.0, 0.67, 2, 2, 1.0)

# What the late INTERESTED on call 7 (cyd, C2, referral, D2; 45 s talk, 600 s wrap, 35 s customer) changes.
LATE = {"connects": 1, "effective": 1, "intents": 1, "handled": 1, "talk_seconds": 45.0, "wrap_seconds": 600.0}
LATE_ROWS = {"agent": "cyd", "team": "South", "campaign": "C2", "source": "referral", "day": "2026-03-03"}


def _after(row: dict) -> dict:
    row = {**row, **{k: row[k] + v for k, v in LATE.items()}}
    row["aht_seconds"] = round((row["talk_seconds"] + row["wrap_seconds"]) / row["handled"], 1)
    return row


@pytest.fixture
async def history(conn, catalog):
    return await report_data.build(conn, catalog)


async def _report(conn, name, by, first=D1, last=D2):
    return await reports.run_report(conn, name, first, last, by, SETTINGS, now=NOW)


def _by_label(report) -> dict[str, dict]:
    return {r["label"]: r for r in report["rows"]}


def _check(got: dict, want: dict, where: str) -> None:
    wrong = {k: (got[k], v) for k, v in want.items() if got[k] != v}
    assert not wrong, f"{where}: (got, want) {wrong}"


async def test_funnel_matches_the_hand_computed_figures_for_every_grouping(conn, history):
    for by, want in FUNNEL_BEFORE.items():
        report = await _report(conn, "funnel", by)
        rows = _by_label(report)
        assert set(rows) == set(want), by
        for label, figures in want.items():
            _check(rows[label], figures, f"{by}={label}")
        _check(report["total"], TOTAL_BEFORE, f"{by} total")


async def test_rates_are_the_definitions_ratios(conn, history):
    row = _by_label(await _report(conn, "funnel", "agent"))["ann"]
    assert row["connect_rate"] == round(2 / 3, 4)
    assert row["effective_rate"] == 0.5
    assert row["intent_rate"] == 0.5
    assert row["conversion_rate"] == 0.5


async def test_a_late_disposition_changes_the_rolled_up_figures_of_its_day(conn, catalog, history):
    for by in FUNNEL_BEFORE:  # the rollup is built and read before the late wrap-up
        await _report(conn, "funnel", by)
    await report_data.record_late_disposition(conn, catalog, history)
    # one agent on one day is marked, not the whole day
    assert await conn.fetchval("select count(*) from report_dirty_agent_days") == 1
    for by, want in FUNNEL_BEFORE.items():
        rows = _by_label(await _report(conn, "funnel", by))
        for label, figures in want.items():
            expected = _after(figures) if label == LATE_ROWS[by] else figures
            _check(rows[label], expected, f"after late disposition, {by}={label}")
    total = (await _report(conn, "funnel", "campaign"))["total"]
    _check(total, {"connects": 5, "handled": 6, "aht_seconds": 219.2}, "total after")


async def test_a_range_outside_the_calls_has_zero_rows_per_period(conn, history):
    report = await _report(conn, "funnel", "day", dt.date(2026, 1, 5), dt.date(2026, 1, 6))
    assert [r["key"] for r in report["rows"]] == ["2026-01-05", "2026-01-06"]
    assert all(r["dials"] == 0 and r["connect_rate"] is None for r in report["rows"])


async def test_weeks_and_months_are_clipped_to_the_range(conn, history):
    weeks = await _report(conn, "funnel", "week", dt.date(2026, 2, 26), D2)
    assert [r["key"] for r in weeks["rows"]] == ["2026-02-26", "2026-03-02"]
    assert weeks["rows"][1]["dials"] == 7
    months = await _report(conn, "funnel", "month", dt.date(2026, 2, 1), D2)
    assert [r["key"] for r in months["rows"]] == ["2026-02-01", "2026-03-01"]
    # February: the three sales to X, Y, Z (old customers); X, Y, Z all bought in it.
    assert (months["rows"][0]["sales"], months["rows"][0]["active_customers"]) == (3, 0)
    # March 1st: X and Y active (Z cancelled in February); X, Y and call 1's customer churn.
    assert (months["rows"][1]["active_customers"], months["rows"][1]["churned"]) == (2, 2)


async def test_changing_the_effective_seconds_rebuilds_the_rollup(conn, history):
    await _report(conn, "funnel", "agent")
    stricter = reports.ReportSettings(time_zone="Asia/Shanghai", effective_seconds=45)
    report = await reports.run_report(conn, "funnel", D1, D2, "agent", stricter, now=NOW)
    assert _by_label(report)["bob"]["effective"] == 1  # 80 s yes, 40 s no


# --- quality and service -------------------------------------------------------------

async def _add_quality_facts(conn, h) -> None:
    compliance_fail = [{"id": "recording_disclosure", "category": "compliance", "passed": False},
                       {"id": "greeting", "category": "attitude", "passed": True}]
    # Call 1 has a result (customer talk only) from the history; score it, and add a second version.
    await conn.execute(
        "update qa_results set score = 80, categories = $2, checks = $3 where call_id = $1",
        h.calls[1], {"attitude": 100, "compliance": 60}, compliance_fail,
    )
    await report_data.qa_result(conn, h.calls[1], 50, score=60, categories={"attitude": 80, "compliance": None},
                                checks=compliance_fail, version="v2")
    await report_data.qa_result(conn, h.calls[8], 0, score=90, categories={"attitude": 90})
    customer = await conn.fetchval("select customer_id from calls where id = $1", h.calls[1])
    complaints = [  # call, received, due, resolved
        (h.calls[1], report_data.local(D1, 12), report_data.local(D2, 12), report_data.local(D1, 18)),
        (h.calls[1], report_data.local(D1, 13), report_data.local(D1, 14), report_data.local(D1, 20)),
        (h.calls[5], report_data.local(D2, 13), report_data.local(D2, 14), None),
    ]
    for call_id, received, due, resolved in complaints:
        await conn.execute(
            """insert into complaints (customer_id, call_id, received_at, complainant, channel, content,
                   ack_due_at, resolve_due_at, resolved_at, state)
               values ($1, $2, $3, 'Li', 'phone', 'late delivery', $4, $4, $5,
                       case when $5::timestamptz is null then 'new' else 'resolved' end)""",
            customer, call_id, received, due, resolved,
        )
    for call_id, score, when in ((h.calls[1], 8, report_data.local(D1, 12)),
                                 (h.calls[1], 6, report_data.local(D2, 12)),
                                 (h.calls[4], 10, report_data.local(D2, 12))):
        await conn.execute(
            """insert into survey_answers (customer_id, call_id, survey, question, score, answered_at)
               values ((select customer_id from calls where id = $1), $1, 'csat', 'How did we do?', $2, $3)""",
            call_id, score, when,
        )
    ann, bob = h.agents["ann"], h.agents["bob"]
    for owner, status, due in ((ann, "done", report_data.local(D1, 15)), (ann, "missed", report_data.local(D2, 9)),
                               (ann, "done", report_data.local(D2, 10)), (bob, "missed", report_data.local(D1, 9))):
        await conn.execute(
            """insert into follow_ups (customer_id, owner_agent_id, due_at, status)
               values ($1, $2, $3, $4)""", customer, owner, due, status,
        )


async def test_quality_figures_per_agent(conn, history):
    await _add_quality_facts(conn, history)
    rows = _by_label(await _report(conn, "quality", "agent"))
    _check(rows["ann"], {
        "qa_results": 4, "qa_score": 76.7, "qa_categories": {"attitude": 90.0, "compliance": 60.0},
        "compliance_failed": 2,
        "complaints_opened": 2, "complaints_resolved": 2, "complaints_overdue": 1,
        "resolution_hours": 6.5, "resolution_vs_due_hours": -6.0,
        "survey_answers": 2, "survey_score": 7.0,
        "callbacks_due": 3, "callbacks_kept": 2, "callbacks_missed": 1, "callback_kept_rate": 0.6667,
    }, "ann")
    _check(rows["bob"], {
        "qa_results": 2, "qa_score": None, "complaints_opened": 1, "complaints_resolved": 0,
        "complaints_overdue": 1, "resolution_hours": None, "survey_answers": 1, "survey_score": 10.0,
        "callbacks_due": 1, "callbacks_kept": 0, "callbacks_missed": 1, "callback_kept_rate": 0.0,
    }, "bob")


async def test_quality_figures_per_day(conn, history):
    await _add_quality_facts(conn, history)
    rows = _by_label(await _report(conn, "quality", "day"))
    _check(rows["2026-03-02"], {"complaints_opened": 2, "survey_answers": 1, "survey_score": 8.0,
                                "callbacks_due": 2, "qa_results": 4}, "D1")
    _check(rows["2026-03-03"], {"complaints_opened": 1, "survey_answers": 2, "survey_score": 8.0,
                                "callbacks_due": 2, "qa_results": 3}, "D2")


# --- cost --------------------------------------------------------------------------

async def test_cost_per_source_channel(conn, history):
    # The leads were created "now" (the test's clock); date them all inside the range.
    await conn.execute("update leads set created_at = $1", report_data.local(D1, 8))
    import_id = await conn.fetchval(
        """insert into lead_imports (campaign_id, file_name, file_sha256, imported, duplicates, rejected,
               cost_per_lead) values ($1, 'fair.csv', 'x', 1, 0, 0, 20.00) returning id""",
        history.campaigns["C1"],
    )
    await conn.execute(
        """update leads set import_id = $1 where id = (select lead_id from calls where id = $2)""",
        import_id, history.calls[1],
    )
    rows = _by_label(await _report(conn, "cost", "source"))
    # trade show: calls 1, 5, 8 handled: talk 420 s = 7 min -> 0.70; (420 + 70) s = 490/3600 h x 36 = 4.90.
    # leads: calls 1, 2, 5, 8, 9, 10 and X = 7 trade-show leads; call 1's lead costs 20 (import), 6 x 5.00.
    trade = rows["trade show"]
    _check(trade, {"telephony_cost": Decimal("0.70"), "agent_cost": Decimal("4.90"), "leads": 7,
                   "lead_cost": Decimal("50.00"), "total_cost": Decimal("55.60"), "revenue": Decimal("300.00"),
                   "cost_per_contact": Decimal("27.80"), "cost_per_sale": Decimal("27.80"),
                   "net_return": Decimal("244.40"), "return_ratio": round(300 / 55.6, 4)}, "trade show")
    # referral: calls 3, 4 handled: talk 150 s = 2.5 min -> 0.25; 180 s -> 1.80; leads 3, 4, 6, 7, Y, Z = 6 x 2.50.
    _check(rows["referral"], {"telephony_cost": Decimal("0.25"), "agent_cost": Decimal("1.80"), "leads": 6,
                              "lead_cost": Decimal("15.00"), "total_cost": Decimal("17.05"),
                              "cost_per_sale": None, "return_ratio": 0.0}, "referral")


# --- requests ------------------------------------------------------------------------

@pytest.mark.parametrize("name, by, first, last", [
    ("sales", "agent", D1, D2), ("funnel", "region", D1, D2), ("funnel", "agent", D2, D1),
])
async def test_bad_report_requests_are_user_errors(conn, name, by, first, last):
    with pytest.raises(UserError):
        await reports.run_report(conn, name, first, last, by, SETTINGS)


@pytest.mark.parametrize("first, last, months", [
    ("2026-01-01", "2026-12-31", ("2026-01-01", "2027-01-01")),
    ("2026-01-15", "2026-03-31", ("2026-02-01", "2026-04-01")),
    ("2026-01-15", "2026-02-27", ("2026-01-15", "2026-01-15")),  # no whole month: days only
    ("2026-02-01", "2026-02-28", ("2026-02-01", "2026-03-01")),
])
def test_whole_months_of_a_range_are_read_from_the_monthly_rollup(first, last, months):
    got = reports._whole_months(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    assert got == tuple(dt.date.fromisoformat(m) for m in months)


async def test_a_cancellation_after_the_rollup_was_built_shows_as_churn(conn, history):
    d3 = D2 + dt.timedelta(days=1)
    bob = lambda report: _by_label(report)["bob"]  # noqa: E731
    before = bob(await _report(conn, "funnel", "agent", d3, d3))
    assert (before["active_customers"], before["churned"]) == (1, 0)  # call 5's customer, bought on D2
    order_id = await conn.fetchval("select id from orders where call_id = $1", history.calls[5])
    await orders.set_status(conn, order_id, "cancelled", user_id=None, reason="late", now=report_data.local(d3, 10))
    after = bob(await _report(conn, "funnel", "agent", d3, d3))
    assert (after["active_customers"], after["churned"], after["churn_rate"]) == (1, 1, 1.0)
    # and the revenue of D2 loses the cancelled order (its call's day is recomputed)
    assert bob(await _report(conn, "funnel", "agent"))["revenue"] == Decimal("0.00")
