"""A small call-center history with known report figures (hand-computed in tests/test_reports.py).

Report time zone Asia/Shanghai (UTC+8). The range is D1..D2 = 2026-03-02..03.
Agents ann and bob are in team North, cyd in team South; campaigns C1 and C2;
lead sources "trade show" and "referral".

 #  agent camp source      day dir  disposition  talk  wrap  customer talk (QA)
 1  ann   C1   trade show  D1  out  SALE 2x100   120   30    50   order cancelled on D2
 2  ann   C1   trade show  D1  out  NA           -     -     -
 3  ann   C1   referral    D1  out  NI           60    10    20
 4  bob   C1   referral    D1  out  INTERESTED   90    20    40
 5  bob   C2   trade show  D2  out  SALE 3x100   200   40    80
 6  cyd   C2   referral    D2  out  AM           (20)  -     -
 7  cyd   C2   referral    D2  out  (late: INTERESTED, 600 s after hang-up)  45  600  35
 8  ann   C1   trade show  D2  in   INFO         100   0     -
 9  ann   C1   trade show  D0  out  NA   (23:59 the day before: outside the range)
10  ann   C1   trade show  D3  out  NA   (00:00 the day after: outside the range)

Churn: customer X (ann, C1, trade show) ordered 2026-02-01 and cancels on D1;
Y (bob, C1, referral) ordered 2026-02-10 and goes on the do-not-call list on D2;
Z (cyd, C2, referral) ordered 2026-02-15 and cancelled 2026-02-20 (not active);
call 1's customer orders on D1 and cancels on D2.

Agent status (ann): ready 01:00-02:00, paused 02:00-02:15, on_call 02:15-03:00,
logged out 03:00-04:00 on D1; bob: paused 23:30 D1 - 00:30 D2 (split at midnight).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import factories

from crm import calls as call_store
from crm import dnc, orders
from crm.dispositions import record_disposition
from crm.users import create_user

TZ = dt.timezone(dt.timedelta(hours=8))
D1 = dt.date(2026, 3, 2)
D2 = dt.date(2026, 3, 3)


def local(day: dt.date, hh: int, mm: int = 0, ss: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=TZ)


@dataclass
class History:
    agents: dict[str, int] = field(default_factory=dict)
    campaigns: dict[str, int] = field(default_factory=dict)
    calls: dict[int, str] = field(default_factory=dict)
    late_call_ended: dt.datetime | None = None


def _order(product: str, quantity: int) -> dict:
    return {
        "product": product,
        "quantity": quantity,
        "unit_price": "100.00",
        "delivery_date": "2026-04-01",
        "delivery_address": "1 Nanjing Road, Shanghai",
        "payment_method": "bank_transfer",
    }


async def _dispose(conn, catalog, call_id, agent_id, code, at, **parts) -> dict:
    return await record_disposition(
        conn,
        catalog,
        {"code": code, "call_id": call_id, **parts},
        agent_id=agent_id,
        payment_methods=factories.RULES["payment_methods"],
        departments=factories.RULES["departments"],
        default_currency="CNY",
        ack_hours=24,
        resolve_hours=72,
        now=at,
    )


async def _call(conn, lead_id, agent_id, start, talk=None, direction="outbound", ring=10) -> tuple[str, dt.datetime]:
    call_id = await factories.call(conn, lead_id, agent_id, direction=direction, now=start)
    answered = start + dt.timedelta(seconds=ring) if talk is not None else None
    ended = (answered + dt.timedelta(seconds=talk)) if answered else start + dt.timedelta(seconds=30)
    await call_store.end_call(conn, call_id, ended_at=ended, answered_at=answered, hangup_side="customer")
    return call_id, ended


async def qa_result(conn, call_id: str, customer_talk_s: float, score=None, categories=None, checks=None,
                    version: str = "v1") -> None:
    await conn.execute(
        """insert into qa_results (call_id, scorecard, scorecard_version, model, duration_seconds, transcript,
               metrics, checks, categories, score, timings)
           values ($1, 'sales', $6, 'test', 60, '[]', $2, $3, $4, $5, '{}')""",
        call_id,
        {"customer_talk_s": customer_talk_s, "agent_talk_s": 10.0},
        checks or [],
        categories or {},
        score,
        version,
    )


async def build(conn, catalog) -> History:
    h = History()
    for name, team in (("ann", "North"), ("bob", "North"), ("cyd", "South")):
        row = await create_user(conn, name, "agent", "not-a-real-hash", team=team)
        h.agents[name] = row["id"]
    for name in ("C1", "C2"):
        h.campaigns[name] = await factories.campaign(conn, name=name)
    ann, bob, cyd = h.agents["ann"], h.agents["bob"], h.agents["cyd"]
    c1, c2 = h.campaigns["C1"], h.campaigns["C2"]

    async def lead(campaign, source):
        return await factories.lead(conn, campaign, source_channel=source)

    # --- calls -------------------------------------------------------------
    plan = [
        # n, agent, campaign, source, start, talk, code, wrap, customer talk, order
        (1, ann, c1, "trade show", local(D1, 9), 120, "SALE", 30, 50, _order("tea", 2)),
        (2, ann, c1, "trade show", local(D1, 9, 10), None, "NA", 0, None, None),
        (3, ann, c1, "referral", local(D1, 9, 20), 60, "NI", 10, 20, None),
        (4, bob, c1, "referral", local(D1, 10), 90, "INTERESTED", 20, 40, None),
        (5, bob, c2, "trade show", local(D2, 10), 200, "SALE", 40, 80, _order("rice", 3)),
        (6, cyd, c2, "referral", local(D2, 11), 20, "AM", 0, None, None),
        (7, cyd, c2, "referral", local(D2, 12), 45, None, None, 35, None),
        (9, ann, c1, "trade show", local(D1, 0) - dt.timedelta(minutes=1), None, "NA", 0, None, None),
        (10, ann, c1, "trade show", local(D2 + dt.timedelta(days=1), 0), None, "NA", 0, None, None),
    ]
    sale_order_1 = None
    for n, agent, campaign, source, start, talk, code, wrap, customer_talk, order in plan:
        lead_id = await lead(campaign, source)
        call_id, ended = await _call(conn, lead_id, agent, start, talk)
        h.calls[n] = call_id
        if customer_talk is not None:
            await qa_result(conn, call_id, customer_talk)
        if code is None:
            h.late_call_ended = ended
            continue
        parts = {"order": order} if order else {}
        result = await _dispose(conn, catalog, call_id, agent, code, ended + dt.timedelta(seconds=wrap), **parts)
        if n == 1:
            sale_order_1 = result["order_id"]
    # 8: inbound service call on a C1 lead
    lead8 = await lead(c1, "trade show")
    call_id, ended = await _call(conn, lead8, ann, local(D2, 14), 100, direction="inbound")
    h.calls[8] = call_id
    await _dispose(conn, catalog, call_id, ann, "INFO", ended)

    # --- churn -------------------------------------------------------------
    x = await _old_customer(conn, catalog, ann, c1, "trade show", local(dt.date(2026, 2, 1), 10))
    y = await _old_customer(conn, catalog, bob, c1, "referral", local(dt.date(2026, 2, 10), 10))
    z = await _old_customer(conn, catalog, cyd, c2, "referral", local(dt.date(2026, 2, 15), 10))
    await orders.set_status(conn, x["order_id"], "cancelled", user_id=None, reason="changed mind",
                            now=local(D1, 15))
    await dnc.add(conn, y["phone"], "asked not to be called", source="customer_request", added_by=None,
                  now=local(D2, 9))
    await orders.set_status(conn, z["order_id"], "cancelled", user_id=None, reason="moved",
                            now=local(dt.date(2026, 2, 20), 10))
    await orders.set_status(conn, sale_order_1, "cancelled", user_id=None, reason="too expensive",
                            now=local(D2, 16))

    # --- agent status ----------------------------------------------------------
    status = [
        (ann, "ready", local(D1, 1), local(D1, 2)),
        (ann, "paused", local(D1, 2), local(D1, 2, 15)),
        (ann, "on_call", local(D1, 2, 15), local(D1, 3)),
        # ann logged out 03:00-04:00: no row
        (bob, "paused", local(D1, 23, 30), local(D2, 0, 30)),
        (bob, "ready", local(D2, 0, 30), None),  # still open: not counted
    ]
    for user_id, state, start, end in status:
        await conn.execute(
            "insert into agent_status_log (user_id, status, started_at, ended_at) values ($1, $2, $3, $4)",
            user_id, state, start, end,
        )
    return h


async def _old_customer(conn, catalog, agent, campaign, source, at) -> dict:
    """A customer who bought before the range: a sale call at `at`."""
    number = factories.phone()
    lead_id = await factories.lead(conn, campaign, number=number, source_channel=source)
    call_id, ended = await _call(conn, lead_id, agent, at, 60)
    result = await _dispose(conn, catalog, call_id, agent, "SALE", ended, order=_order("tea", 1))
    return {"order_id": result["order_id"], "phone": number}


async def record_late_disposition(conn, catalog, h: History) -> None:
    await _dispose(conn, catalog, h.calls[7], h.agents["cyd"], "INTERESTED",
                   h.late_call_ended + dt.timedelta(seconds=600))

