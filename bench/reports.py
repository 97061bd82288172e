"""The sales funnel on a large generated history: ours (rollup) against a naive GROUP BY on the raw tables.

    .venv/bin/python bench/reports.py [--calls 1000000] [--leads 100000] [--repeat 20] [--keep DIR] [--parts]

Starts its own embedded PostgreSQL in a temporary folder (or reuses DIR with
--keep, so a big data set is generated once), and generates with
generate_series in SQL, triggers off: 200 agents in 10 teams, 10 campaigns,
`--leads` leads and customers over 11 source channels, `--calls` calls over the
two years 2024-2025 (Asia/Shanghai), dispositions in realistic shares (about
40% answered by a person, 3% sales with an order each, 2% of the orders later
cancelled, some do-not-call requests), a wrap-up row per answered call, a QA
result (customer talk seconds) for a quarter of them, and agent status rows.
Then the rollup is built once (timed), brought up to date once (a data set
from before migration 0014 builds its churn and per-agent rollups here, not
inside a timed run), and for one day, one month and one year the funnel by
agent is run `--repeat` times each:

- ours: crm.reports.run_report("funnel", by="agent"), as the API answers:
  the rollup refresh check, the call sums from the per-agent rollup
  (report_call_agent_daily/monthly: whole months from the monthly table, the
  days at either end from the daily one), agent status seconds from
  report_status_daily/monthly the same way, customers active at the range's
  start from the churn rollup (report_churn_daily/monthly: starts minus stops
  before that day), and the customers who churned in the range from the
  index on report_customers.ended, the total row included. What each part
  reads depends on the range's length, not on how many years of calls lie
  before it; --parts prints each query's time and shared buffers
  (EXPLAIN (ANALYZE, BUFFERS)) for every range, to check that.
- baseline: one naive GROUP BY agent over calls joined to dispositions,
  call_dispositions, qa_results and orders for the same call figures (no churn,
  no status time, no total), straight from the raw tables.

Prints p50/p95 of each and the ratio baseline/ours; goal: ours p95 < 500 ms for
every range. Finally one late disposition is written and the refresh and the
next year-long report are timed: only that call's agent on that day is
recomputed (about 100 calls at 10M, not the day's 13,700), and the day's month
rows move by the day's difference instead of being summed again. Full size:
--calls 10000000 --leads 1000000 (on a shared 2-core machine about an hour to
generate; the calls insert at about 6,000 rows/s).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crm import db, report_rollup, reports  # noqa: E402
from crm.dispositions_catalog import load_catalog, sync_catalog  # noqa: E402
from telesales.settings import CONFIG_DIR  # noqa: E402

TZ = "Asia/Shanghai"
SETTINGS = reports.ReportSettings(time_zone=TZ, effective_seconds=30)
AGENTS, TEAMS, CAMPAIGNS = 200, 10, 10
CHANNELS = ["展会", "trade show", "referral", "web search", "market research", "purchased list",
            "inbound call", "social media", "partner", "existing customer", "展會"]
RANGES = {
    "day": (dt.date(2025, 6, 18), dt.date(2025, 6, 18)),
    "month": (dt.date(2025, 6, 1), dt.date(2025, 6, 30)),
    "year": (dt.date(2025, 1, 1), dt.date(2025, 12, 31)),
}

# Dispositions by share of calls: the cumulative bound of a hash in [0, 1000).
CODES = [("NA", 380), ("B", 460), ("AM", 560), ("DC", 570), ("HU", 650), ("NI", 850), ("INTERESTED", 920),
         ("CALLBACK", 950), ("SALE", 980), ("DNC", 985), ("WN", 990), ("INFO", 1000)]

GENERATE = [
    "insert into teams (name) select 'team ' || i from generate_series(1, {teams}) i",
    """insert into users (username, role, password_hash, team_id)
       select 'agent' || i, 'agent', 'x', (i % {teams}) + 1 from generate_series(1, {agents}) i""",
    "insert into campaigns (name) select 'campaign ' || i from generate_series(1, {campaigns}) i",
    """insert into customers (id, name, source_channel, created_at)
       select i, 'customer ' || i, (array{channels})[1 + i % 11], '2024-01-01+08'::timestamptz
              + (i::float / {leads}) * interval '730 days'
       from generate_series(1, {leads}) i""",
    """insert into customer_phones (e164, customer_id, is_primary)
       select '+86139' || lpad(i::text, 8, '0'), i, true from generate_series(1, {leads}) i""",
    """insert into leads (id, campaign_id, customer_id, phone, source_channel, created_at)
       select i, 1 + i % {campaigns}, i, '+86139' || lpad(i::text, 8, '0'), (array{channels})[1 + i % 11],
              '2024-01-01+08'::timestamptz + (i::float / {leads}) * interval '730 days'
       from generate_series(1, {leads}) i""",
    # One call every ~6 s over two years; h is a cheap hash that picks the disposition.
    """insert into calls (id, direction, agent_id, customer_id, lead_id, campaign_id, to_number, created_at,
                          answered_at, ended_at, duration_seconds, disposition)
       select gen_random_uuid(), 'outbound', a.agent, a.lead, a.lead, 1 + a.lead % {campaigns},
              '+86139' || lpad(a.lead::text, 8, '0'), a.at,
              case when d.human_answered then a.at + interval '8 s' end,
              a.at + interval '8 s' + case when d.human_answered then a.talk * interval '1 s' else interval '22 s' end,
              case when d.human_answered then a.talk else 0 end, d.code
       from (select i, h,
                    1 + (i * 7919) % {leads} as lead,
                    1 + ((i / 7) % 20) * 10 + ((1 + (i * 7919) % {leads}) % 10) as agent,
                    '2024-01-01+08'::timestamptz + (i::float / {calls}) * interval '730 days' as at,
                    15 + (h * 37) % 400 as talk
             from (select i, (i * 2654435761) % 1000 as h from generate_series(1::bigint, {calls}) i) x) a
       join dispositions_by_share d on a.h >= d.lower and a.h < d.upper""",
    """insert into call_dispositions (call_id, lead_id, customer_id, agent_id, code, created_at)
       select c.id, c.lead_id, c.customer_id, c.agent_id, c.disposition,
              c.ended_at + ((extract(epoch from c.created_at)::bigint % 90) * interval '1 s')
       from calls c join dispositions d on d.code = c.disposition where d.human_answered""",
    """insert into qa_results (call_id, scorecard, scorecard_version, model, duration_seconds, transcript,
                               metrics, checks, categories, score, timings)
       select c.id, 'sales', 'v1', 'bench', c.duration_seconds, '[]',
              jsonb_build_object('customer_talk_s', (c.duration_seconds * 0.4)::numeric(10, 1)),
              '[]', '{{}}', 50 + (extract(epoch from c.created_at)::bigint % 50), '{{}}'
       from calls c join dispositions d on d.code = c.disposition
       where d.human_answered and extract(epoch from c.created_at)::bigint % 4 = 0""",
    """insert into orders (customer_id, call_id, lead_id, agent_id, product, quantity, unit_price, currency,
                           delivery_date, delivery_address, payment_method, status, created_at, updated_at)
       select c.customer_id, c.id, c.lead_id, c.agent_id, 'tea', 1 + (extract(epoch from c.created_at)::bigint % 3),
              199.00, 'CNY', (c.created_at + interval '7 days')::date, 'Shanghai', 'bank_transfer',
              case when extract(epoch from c.created_at)::bigint % 50 = 0 then 'cancelled' else 'confirmed' end,
              c.created_at,
              c.created_at + case when extract(epoch from c.created_at)::bigint % 50 = 0
                                  then interval '20 days' else interval '0 s' end
       from calls c where c.disposition = 'SALE'""",
    """insert into do_not_call (e164, reason, source, added_at)
       select distinct on (c.to_number) c.to_number, 'asked', 'customer_request', c.ended_at
       from calls c where c.disposition = 'DNC' order by c.to_number, c.created_at""",
    "drop index agent_status_log_span",  # built once after the rows, not row by row
    # Each agent: ready 8 h, pause 1 h a day over the two years.
    """insert into agent_status_log (user_id, status, started_at, ended_at)
       select u.id, s.status, d.day + s.start_at, d.day + s.start_at + s.length
       from users u
       cross join generate_series('2024-01-01+08'::timestamptz, '2025-12-31+08', interval '1 day') d (day)
       cross join (values ('ready', interval '9 h', interval '4 h'), ('paused', interval '13 h', interval '1 h'),
                          ('ready', interval '14 h', interval '4 h')) s (status, start_at, length)
       where u.role = 'agent'""",
    "create index agent_status_log_span on agent_status_log using gist (tstzrange(started_at, ended_at))",
]

NAIVE = """
select c.agent_id,
       count(*) filter (where c.direction = 'outbound') as dials,
       count(*) filter (where c.direction = 'outbound' and d.human_answered) as connects,
       count(*) filter (where c.direction = 'outbound' and d.human_answered and q.talk >= 30) as effective,
       count(*) filter (where c.direction = 'outbound' and d.intent) as intents,
       count(*) filter (where c.direction = 'outbound' and d.sale) as sales,
       sum(o.total) filter (where c.direction = 'outbound') as revenue,
       count(*) filter (where d.human_answered) as handled,
       sum(c.duration_seconds) filter (where d.human_answered) as talk,
       sum(extract(epoch from cd.created_at - c.ended_at)) filter (where d.human_answered) as wrap
from calls c
left join dispositions d on d.code = c.disposition
left join call_dispositions cd on cd.call_id = c.id
left join (select call_id, max((metrics ->> 'customer_talk_s')::numeric) as talk
           from qa_results group by call_id) q on q.call_id = c.id
left join (select call_id, sum(total) as total from orders where status <> 'cancelled' group by call_id) o
       on o.call_id = c.id
where c.created_at >= $1::date::timestamp at time zone $3 and c.created_at < ($2::date + 1)::timestamp at time zone $3
group by c.agent_id
"""


BULK_TABLES = ["calls", "call_dispositions", "qa_results", "orders"]


async def drop_secondary_indexes(conn) -> list[str]:
    """Drop the big tables' indexes that no constraint needs and return their definitions: building an
    index once after the rows (a sort) is many times faster than maintaining it row by row."""
    rows = await conn.fetch(
        """select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as ddl
           from pg_index i
           where i.indrelid = any($1::regclass[])
             and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)""",
        BULK_TABLES,
    )
    for row in rows:
        await conn.execute(f"drop index {row['name']}")
    return [row["ddl"] for row in rows]


async def generate(conn, calls: int, leads: int) -> float:
    started = time.perf_counter()
    await conn.execute("set session_replication_role = replica")  # triggers off: the rollup is built after
    await conn.execute("set maintenance_work_mem = '512MB'")
    indexes = await drop_secondary_indexes(conn)
    bounds = zip(CODES, [0] + [u for _, u in CODES], strict=False)
    await conn.execute("create temporary table dispositions_by_share as select d.code, d.human_answered, b.lower, "
                       "b.upper from dispositions d join (values " +
                       ", ".join(f"('{c}', {lower}, {u})" for (c, u), lower in bounds) +
                       ") b (code, lower, upper) on b.code = d.code")
    params = dict(teams=TEAMS, agents=AGENTS, campaigns=CAMPAIGNS, leads=leads, calls=calls,
                  channels="[" + ", ".join(f"'{c}'" for c in CHANNELS) + "]")
    for sql in GENERATE:
        step = time.perf_counter()
        status = await conn.execute(sql.format(**params))
        print(f"  {status:<28} {time.perf_counter() - step:7.1f} s", flush=True)
    step = time.perf_counter()
    for ddl in indexes:
        await conn.execute(ddl)
    print(f"  {len(indexes)} indexes rebuilt{'':9} {time.perf_counter() - step:7.1f} s", flush=True)
    for table in ("customers", "leads", "users", "teams", "campaigns", "lead_imports"):
        await conn.execute(f"select setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"coalesce((select max(id) from {table}), 1))")
    await conn.execute("set session_replication_role = origin")
    await conn.execute("vacuum analyze")
    return time.perf_counter() - started


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def _timed(repeat: int, run) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    return times


class _Parts:
    """A connection that times each statement and EXPLAINs (ANALYZE, BUFFERS) each read (--parts)."""

    def __init__(self, conn) -> None:
        self._conn, self.log = conn, []

    def __getattr__(self, name):
        return getattr(self._conn, name)

    async def _run(self, method: str, sql: str, *args):
        started = time.perf_counter()
        result = await getattr(self._conn, method)(sql, *args)
        ms = (time.perf_counter() - started) * 1000
        plan = None
        if sql.lstrip().lower().startswith(("with", "select")):
            value = (await self._conn.fetch("explain (analyze, buffers, format json) " + sql, *args))[0][0]
            top = (json.loads(value) if isinstance(value, str) else value)[0]
            node = top["Plan"]
            plan = (top["Execution Time"], node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0),
                    node.get("Actual Rows"))
        self.log.append((ms, " ".join(sql.split())[:80], plan))
        return result

    async def fetch(self, sql, *args):
        return await self._run("fetch", sql, *args)

    async def fetchrow(self, sql, *args):
        return await self._run("fetchrow", sql, *args)

    async def fetchval(self, sql, *args):
        return await self._run("fetchval", sql, *args)

    async def execute(self, sql, *args):
        return await self._run("execute", sql, *args)


async def parts(conn) -> None:
    for name, (first, last) in RANGES.items():
        spy = _Parts(conn)
        await reports.run_report(spy, "funnel", first, last, "agent", SETTINGS)
        print(f"parts of the {name} report (wall ms; EXPLAIN ANALYZE ms, shared buffers, rows; statement):")
        for ms, sql, plan in spy.log:
            explained = f"{plan[0]:7.1f} ms {plan[1]:6} buf {plan[2]:6.0f} rows" if plan else " " * 32
            print(f"  {ms:7.1f} ms  {explained}  {sql}")


async def measure(conn, repeat: int, naive_repeat: int) -> None:
    print(f"{'range':<6} {'ours p50':>10} {'ours p95':>10} {'naive p50':>10} {'naive p95':>10} "
          f"{'naive/ours':>11}  goal p95 < 500 ms")
    for name, (first, last) in RANGES.items():
        ours = await _timed(repeat, lambda f=first, t=last: reports.run_report(conn, "funnel", f, t, "agent",
                                                                                 SETTINGS))
        naive = await _timed(naive_repeat, lambda f=first, t=last: conn.fetch(NAIVE, f, t, TZ))
        ours_p95, naive_p95 = _p(ours, 95), _p(naive, 95)
        verdict = "ok" if ours_p95 < 500 else "MISSED"
        print(f"{name:<6} {_p(ours, 50):8.1f}ms {ours_p95:8.1f}ms {_p(naive, 50):8.1f}ms {naive_p95:8.1f}ms "
              f"{naive_p95 / ours_p95:10.1f}x  {verdict}", flush=True)


async def late_disposition(conn) -> None:
    call = await conn.fetchrow(
        "select id, created_at from calls where disposition = 'HU' and created_at >= '2025-06-18+08' limit 1")
    await conn.execute("update calls set disposition = 'INTERESTED' where id = $1", call["id"])
    first, last = RANGES["year"]
    started = time.perf_counter()
    days = await report_rollup.refresh(conn, TZ, SETTINGS.effective_seconds)
    refresh_ms = (time.perf_counter() - started) * 1000
    report = await reports.run_report(conn, "funnel", first, last, "agent", SETTINGS)
    ms = (time.perf_counter() - started) * 1000
    print(f"late disposition: next year-long report {ms:.0f} ms, of which the refresh {refresh_ms:.0f} ms "
          f"({days} day, one agent's calls recomputed); total intents {report['total']['intents']:,}")


async def bench(args) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tsbench"))
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder / "pgdata", cleanup_mode=None if args.keep else "delete")
    name = f"bench_reports_{args.calls}"
    try:
        admin = server.get_uri()
        conn = await db.connect(admin)
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            await conn.execute(f'create database "{name}"')
        await conn.close()
        conn = await db.connect(db.with_database(admin, name))
        await db.migrate(conn)
        await sync_catalog(conn, load_catalog(CONFIG_DIR / "dispositions.toml"))
        if not exists or not await conn.fetchval("select exists (select 1 from calls)"):
            print(f"generating {args.calls:,} calls and {args.leads:,} leads ...", flush=True)
            seconds = await generate(conn, args.calls, args.leads)
            print(f"generated in {seconds:.0f} s", flush=True)
            started = time.perf_counter()
            await report_rollup.rebuild(conn, TZ, SETTINGS.effective_seconds)
            await conn.execute("analyze report_call_daily")
            rows = await conn.fetchval("select count(*) from report_call_daily")
            print(f"rollup built in {time.perf_counter() - started:.0f} s ({rows:,} rows)", flush=True)
        counts = await conn.fetchrow("select (select count(*) from calls) calls, (select count(*) from leads) leads, "
                                     "(select count(*) from orders) orders, (select count(*) from qa_results) qa")
        print(f"data: {counts['calls']:,} calls, {counts['leads']:,} leads, {counts['orders']:,} orders, "
              f"{counts['qa']:,} QA results")
        started = time.perf_counter()
        await report_rollup.refresh(conn, TZ, SETTINGS.effective_seconds)  # pending changes, new rollups
        print(f"rollup brought up to date in {time.perf_counter() - started:.1f} s; load {_load()}", flush=True)
        if args.parts:
            await parts(conn)
        await measure(conn, args.repeat, args.naive_repeat)
        await late_disposition(conn)
        print(f"load average at the end: {_load()}")
        await conn.close()
    finally:
        if not args.keep:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="call rows (full size: 10000000)")
    parser.add_argument("--leads", type=int, default=100_000, help="leads and customers (full size: 1000000)")
    parser.add_argument("--repeat", type=int, default=20, help="runs of ours per range")
    parser.add_argument("--naive-repeat", type=int, default=5, help="runs of the naive GROUP BY per range")
    parser.add_argument("--parts", action="store_true",
                        help="print each query of the report with its time and buffers (EXPLAIN ANALYZE) first")
    parser.add_argument("--keep", help="keep the server and data in this folder and reuse them next time")
    args = parser.parse_args()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
