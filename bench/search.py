"""Transcript search latency on a large archive against an unindexed ILIKE scan.

    .venv/bin/python bench/search.py [--segments 1000000] [--repeats 20] [--keep DIR] [--explain]
                                     [--probes 10] [--vector-index] [--database-url URL]

Generates SEGMENTS transcript segments (half English, half Chinese, 25 per
call, 200 agents in 20 teams, calls spread over 90 days) in a throw-away
embedded PostgreSQL migrated with the project's migrations, so the indexes
are the real ones (--keep DIR: the server and data stay in DIR and the next
run with the same --segments reuses them, applying newer migrations).
Embeddings are random unit vectors (the model's output does not change how
long a distance takes). Then, for each kind of query, p50 and p95 over
`repeats` runs with varying terms, through the same functions the API calls
(crm/transcript_search.py, one page of 20 plus the count capped at 1000):

- keyword: an English phrase, rare (about 0.07% of segments: the trigram index looks up its rarest word,
  the full-text index its stems, every match is ranked) and frequent (about 3%: counted to 1000 through
  the full-text index alone, the newest 20 by walking the primary key back);
- chinese: two- to five-character Chinese words and phrases (bigram index), rare and frequent;
- filtered: a keyword search by a reviewer with assigned teams, plus speaker and date range;
- semantic: the 50 nearest segments to a query vector through the embedding lists
  (crm/embedding_lists.py, trained here after the load, --probes lists read per query; each list's
  embeddings read from the covering index of migration 0015), over all calls, a reviewer's teams and one
  agent's calls; HNSW instead with --vector-index, which the embedded server's pgvector only survives on
  CPUs with AVX-512.

Baselines, from the same run: for text, `text ILIKE '%term%'` over the same
rows joined to their calls, newest first, 20 rows: what a search without
these indexes costs; for semantic, the exact scan (every embedding the viewer
may see ranked: what semantic search did without an index), which also gives
the recall of the lists: the share of the exact 50 nearest that the lists
find (by similarity, since a generated vector recurs on several segments).
Embeddings are clustered like sentence embeddings (topics with variations),
queries lie near a topic. Prints each kind's p50/p95 in ms, the baseline's,
the ratio baseline/ours, the load average, and, from EXPLAIN (ANALYZE,
BUFFERS) of the same calls (mean of the first 3 queries of the kind), the
8 kB pages each touched (shared buffers hit or read) and the rows its scans
visited, ours and the baseline's: figures that do not depend on how busy
the machine is. --explain also prints the plans of a few searches.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm import db, embedding_lists  # noqa: E402
from crm import transcript_search as ts  # noqa: E402
from crm.transcripts import normalize  # noqa: E402

PER_CALL = 25
AGENTS = 200
TEAMS = 20
VECTORS = 16384  # distinct generated embeddings, each on about segments / VECTORS segments
TOPICS = 512
BATCH = 20_000
PAGE_RUNS = 3  # runs of each kind explained for its page and row counts

EN_OPEN = ["Hello, this is", "Good morning, my name is", "Hi, I'm calling from", "Thanks for taking my call, I am"]
EN_NAMES = ["Anna", "Ben", "Carlos", "Diana", "Evan", "Fiona", "George", "Hannah"]
EN_BODY = [
    "we have a new offer on home insurance", "could you tell me what matters most to you",
    "the price is forty dollars a month", "delivery takes about three days", "you can pay by bank transfer",
    "I am not interested right now", "please call me back next week", "send me the details by email",
    "how long is the contract", "is there a discount for families", "my neighbour has the same plan",
    "what happens if I move house", "the signal is very bad here", "I need to ask my wife first",
    "does it cover water damage", "can I pay by credit card", "this call may be recorded for quality",
]
EN_RARE = ["I want to cancel my policy", "this is a complaint about your agent", "stop calling me"]
ZH_WORDS = [
    "您好", "我们", "公司", "产品", "价格", "优惠", "活动", "保险", "客户", "服务", "时间", "电话", "需要",
    "考虑", "合同", "付款", "送货", "地址", "朋友", "家人", "今天", "明天", "下周", "一下", "非常", "谢谢",
    "可以", "没有", "什么", "这个", "那个", "问题", "银行", "转账", "信用卡", "质量", "快递", "免费",
]
ZH_RARE = ["我要退货", "我想投诉你们", "别再打电话了", "退款什么时候到"]

# Rare: in about 0.1% of segments each, what a reviewer hunts for. Frequent: in 2-4% each.
EN_QUERIES = ["cancel my policy", "complaint about your agent", "stop calling"]
ZH_QUERIES = ["退货", "投诉", "退款", "别再打电话"]
EN_FREQUENT = ["water damage", "discount for families"]
ZH_FREQUENT = ["信用卡", "质量"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


_TOPICS = _unit(np.random.default_rng(11).standard_normal((TOPICS, 384)))


def clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    """n unit vectors near random topics (cosine about 0.7 to their topic), as sentence embeddings cluster."""
    return _unit(_TOPICS[rng.integers(0, TOPICS, n)] + rng.standard_normal((n, 384)) / np.sqrt(384))


def sentence(rng: random.Random) -> tuple[str, bool]:
    if rng.random() < 0.5:
        if rng.random() < 0.004:
            return rng.choice(EN_RARE) + ", " + rng.choice(EN_BODY) + ".", False
        return f"{rng.choice(EN_OPEN)} {rng.choice(EN_NAMES)}, {rng.choice(EN_BODY)}.", False
    words = [rng.choice(ZH_WORDS) for _ in range(rng.randint(4, 9))]
    if rng.random() < 0.008:
        words.insert(rng.randint(0, len(words)), rng.choice(ZH_RARE))
    return "".join(words) + "。", True


async def load(conn, segments: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    started = time.perf_counter()
    teams = [
        await conn.fetchval("insert into teams (name) values ($1) returning id", f"team {i}") for i in range(TEAMS)
    ]
    agents = [
        await conn.fetchval(
            "insert into users (username, role, password_hash, team_id) values ($1, 'agent', 'x', $2) returning id",
            f"agent{i}", teams[i % TEAMS],
        )
        for i in range(AGENTS)
    ]
    vectors = clustered(np.random.default_rng(seed), VECTORS)
    await conn.execute("create temp table bench_vectors (k int primary key, v halfvec(384))")
    await conn.executemany(
        "insert into bench_vectors values ($1, $2::halfvec)",
        [(k, "[" + ",".join(f"{x:.5f}" for x in v) + "]") for k, v in enumerate(vectors)],
    )
    # Load without the text indexes, then build them once: much faster than updating them row by row.
    index_defs = await conn.fetch(
        "select indexname, indexdef from pg_indexes where tablename = 'transcript_segments'"
        " and indexname not like '%pkey' and indexname not like '%result_id_seq%'"
    )
    for row in index_defs:
        await conn.execute(f"drop index {row['indexname']}")
    # Filing each row in segment_lists as it arrives (the trigger) is done in bulk after the load instead.
    await conn.execute("alter table transcript_segments disable trigger transcript_segments_list")
    now = dt.datetime.now(dt.UTC)
    calls = segments // PER_CALL
    done = 0
    for first in range(0, calls, BATCH // PER_CALL):
        chunk = range(first, min(calls, first + BATCH // PER_CALL))
        call_rows = [(uuid.UUID(int=rng.getrandbits(128)), rng.choice(agents),
                      now - dt.timedelta(minutes=rng.randint(0, 90 * 24 * 60))) for _ in chunk]
        await conn.executemany(
            "insert into calls (id, direction, agent_id, created_at) values ($1, 'outbound', $2, $3)", call_rows
        )
        result_ids = await conn.fetch(
            """insert into qa_results (call_id, scorecard, scorecard_version, model, duration_seconds, transcript,
                   metrics, checks, categories, score, timings)
               select id, 'sales', 'bench', 'bench', 60 + (random() * 500)::int, '[]', '{}',
                      jsonb_build_array(jsonb_build_object('id', 'greeting', 'passed', random() < 0.8)),
                      '{}', round((random() * 100)::numeric, 1), '{}'
               from unnest($1::uuid[]) as id returning id, call_id""",
            [c[0] for c in call_rows],
        )
        cols = {k: [] for k in ("call", "result", "seq", "speaker", "start", "end", "text", "norm")}
        for r in result_ids:
            t = 0.0
            for seq in range(PER_CALL):
                text, _ = sentence(rng)
                length = 1.0 + len(text) * 0.08
                cols["call"].append(r["call_id"])
                cols["result"].append(r["id"])
                cols["seq"].append(seq)
                cols["speaker"].append("agent" if seq % 2 == 0 else "customer")
                cols["start"].append(t)
                cols["end"].append(t + length)
                cols["text"].append(text)
                cols["norm"].append(normalize(text))
                t += length + rng.random()
        await conn.execute(
            """insert into transcript_segments (call_id, result_id, seq, speaker, start_s, end_s, text, norm, embedding)
               select u.c, u.r, u.q, u.sp, u.st, u.en, u.tx, u.nm, b.v
               from unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::real[], $6::real[], $7::text[],
                           $8::text[]) with ordinality u(c, r, q, sp, st, en, tx, nm, o)
               join bench_vectors b on b.k = (u.o + $9) % $10""",
            *cols.values(), done, VECTORS,
        )
        done += len(cols["seq"])
        print(f"\r  loaded {done:,} segments ({time.perf_counter() - started:.0f} s)", end="", flush=True)
    print()
    await conn.execute("alter table transcript_segments enable trigger transcript_segments_list")
    await conn.execute("insert into segment_lists (segment_id, list_id, embedding) select id, -1, embedding "
                       "from transcript_segments where embedding is not null")
    await conn.execute("set maintenance_work_mem = '512MB'")
    for row in index_defs:
        t = time.perf_counter()
        await conn.execute(row["indexdef"])
        print(f"  index {row['indexname']}: {time.perf_counter() - t:.0f} s", flush=True)
    await conn.execute("vacuum analyze")
    print(f"  ready in {time.perf_counter() - started:.0f} s", flush=True)


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far: a database backend's, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(runs: int, make_call, backend: int | None = None) -> tuple[list[float], float]:
    """Wall times of runs calls, and their mean CPU time in ms (this process and the backend serving it:
    what a call costs whatever else the machine is doing; the clock ticks 100 times a second, so the mean
    is good to about 10 ms / runs)."""
    times = []
    cpu = time.process_time() + (cpu_seconds(backend) if backend else 0.0)
    for i in range(runs):
        t = time.perf_counter()
        await make_call(i)
        times.append(time.perf_counter() - t)
    cpu = time.process_time() + (cpu_seconds(backend) if backend else 0.0) - cpu
    return times, cpu * 1000 / max(1, runs)


async def baseline(conn, term: str):
    return await conn.fetch(
        """select s.id, s.text, c.created_at from transcript_segments s join calls c on c.id = s.call_id
           where s.text ilike $1 order by c.created_at desc limit 20""",
        "%" + term + "%",
    )


async def semantic_recall(conn, viewer, vectors, probes: int) -> float:
    """Share of the exact 50 nearest that the lists find, counting any result at least as similar as the
    exact 50th (a generated vector recurs on several segments, so ids alone would undercount)."""
    found = []
    for v in vectors:
        exact = await ts.semantic_search(conn, viewer, v, ts.Filters(), limit=50, min_similarity=-1.0)
        ours = await ts.semantic_search(conn, viewer, v, ts.Filters(), limit=50, min_similarity=-1.0, probes=probes)
        floor = exact[-1]["rank"] - 1e-3
        found.append(sum(1 for r in ours if r["rank"] >= floor) / len(exact))
    return statistics.mean(found)


async def measure(conn, repeats: int, probes: int) -> None:
    admin = ts.Viewer(0, "admin")
    reviewer = await conn.fetchval("insert into users (username, role, password_hash) values ('rev', 'qa', 'x') "
                                   "returning id")
    await conn.execute("insert into reviewer_teams select $1, id from teams order by id limit 5", reviewer)
    agent = await conn.fetchval("select id from users where role = 'agent' order by id limit 1")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    queries = [v.tolist() for v in clustered(np.random.default_rng(3), repeats + 1)]

    def keyword(queries, viewer=admin, **filters):
        async def run(i, c=conn):
            await ts.keyword_search(c, viewer, queries[i % len(queries)], ts.Filters(**filters), limit=20, offset=0)
        return run

    def ilike(terms):
        return lambda i, c=conn: baseline(c, terms[i % len(terms)])

    def semantic(viewer, probes):
        async def run(i, c=conn):
            await ts.semantic_search(c, viewer, queries[i % len(queries)], ts.Filters(), limit=50,
                                     min_similarity=-1.0, probes=probes)
        return run

    qa = ts.Viewer(reviewer, "qa")
    kinds = [
        ("keyword (English phrase, rare)", keyword(EN_QUERIES), ilike(EN_QUERIES)),
        ("keyword (English phrase, frequent)", keyword(EN_FREQUENT), ilike(EN_FREQUENT)),
        ("chinese (2-5 characters, rare)", keyword(ZH_QUERIES), ilike(ZH_QUERIES)),
        ("chinese (2-3 characters, frequent)", keyword(ZH_FREQUENT), ilike(ZH_FREQUENT)),
        ("filtered (reviewer's teams, customer, 30 days)",
         keyword(EN_QUERIES + ZH_QUERIES, qa, speaker="customer", since=since), ilike(EN_QUERIES + ZH_QUERIES)),
    ]
    for label, viewer in (("all calls", admin), ("a reviewer's 5 teams", qa),
                          ("one agent's calls", ts.Viewer(agent, "agent"))):
        kinds.append((f"semantic (50 nearest, {label})", semantic(viewer, probes), semantic(viewer, 0)))
    base_runs = max(3, repeats // 4)
    print(f"\nbaseline: ILIKE scan for text, exact scan for semantic; probes = {probes}")
    backend = conn.get_server_pid() if Path(f"/proc/{conn.get_server_pid()}").exists() else None
    print(f"{'query':50} {'p50 ms':>9} {'p95 ms':>9}   {'base p50':>9} {'base p95':>9}   ratio p95   load"
          f"   {'cpu ms':>7} {'base cpu':>8}"
          f"   {'pages':>8} {'base pages':>10}   {'rows':>8} {'base rows':>10}")
    for name, run, base in kinds:
        await run(0)  # warm the cache once, as a running service would be
        ours_times, cpu = await timed(repeats, run, backend)
        base_times, bcpu = await timed(base_runs, base, backend)
        (p50, p95), (b50, b95) = percentiles(ours_times), percentiles(base_times)
        load = Path("/proc/loadavg").read_text().split()[0]
        # Pages (8 kB buffers) and rows the plans visited, from EXPLAIN (ANALYZE, BUFFERS) of the same calls:
        # evidence that does not depend on the machine's load. Mean over the first few queries of the kind.
        ours = [await pages_of(conn, run, i) for i in range(PAGE_RUNS)]
        base_pages = [await pages_of(conn, base, i) for i in range(PAGE_RUNS)]
        pages, rows = (round(statistics.mean(x)) for x in zip(*ours, strict=True))
        bpages, brows = (round(statistics.mean(x)) for x in zip(*base_pages, strict=True))
        print(f"{name:50} {p50:9.1f} {p95:9.1f}   {b50:9.1f} {b95:9.1f}   {b95 / p95:8.1f}x   {load:>4}"
              f"   {cpu:7.1f} {bcpu:8.1f}   {pages:8} {bpages:10}   {rows:8} {brows:10}", flush=True)
    for label, viewer in (("all calls", admin), ("a reviewer's 5 teams", qa)):
        recall = await semantic_recall(conn, viewer, queries[:base_runs], probes)
        print(f"semantic recall@50 against the exact scan, {label}: {recall:.2f}", flush=True)


class Explained:
    """A connection that runs EXPLAIN (ANALYZE, BUFFERS) of each query it is asked to fetch, in the same
    transaction and with the same settings, before it runs the query itself: the plans and the pages
    (8 kB buffers, from shared buffers or read in) of exactly what the API runs. Pages do not depend on
    how busy the machine is; milliseconds do."""

    def __init__(self, conn, *, show: bool = False) -> None:
        self._conn, self.show, self.pages, self.rows = conn, show, 0, 0

    def __getattr__(self, name):
        return getattr(self._conn, name)

    async def fetchval(self, query: str, *args):
        rows = await self.fetch(query, *args)
        return rows[0][0] if rows else None

    async def fetch(self, query: str, *args):
        plan = await self._conn.fetchval("explain (analyze, buffers, format json) " + query, *args)
        plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]  # crm.db may decode json already
        top = plan["Plan"]
        self.pages += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
        self.rows += _rows_visited(top)
        if self.show:
            text = await self._conn.fetch("explain (analyze, buffers, costs off) " + query, *args)
            print("\n".join("    " + r[0] for r in text))
        return await self._conn.fetch(query, *args)


def _rows_visited(node: dict) -> int:
    """Rows the plan's scans returned plus those their filters removed: the rows it looked at."""
    own = 0
    if "Scan" in node.get("Node Type", ""):
        loops = node.get("Actual Loops", 1)
        own = round((node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
                     + node.get("Rows Removed by Index Recheck", 0)) * loops)
    return own + sum(_rows_visited(child) for child in node.get("Plans", []))


async def pages_of(conn, make_call, i: int = 0) -> tuple[int, int]:
    """(pages, rows visited) of one run of make_call(i) on an Explained connection."""
    explained = Explained(conn)
    await make_call(i, explained)
    return explained.pages, explained.rows


async def explain(conn) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the queries of a rare and a frequent English phrase, a Chinese word and a
    semantic search over all calls, as the API runs them."""
    admin = ts.Viewer(0, "admin")
    for q in ("cancel my policy", "water damage", "别再打电话", "信用卡"):
        print(f"-- keyword {q!r}")
        await ts.keyword_search(Explained(conn, show=True), admin, q, ts.Filters(), limit=20, offset=0)
    vector = clustered(np.random.default_rng(3), 1)[0].tolist()
    print("-- semantic, all calls")
    await ts.semantic_search(Explained(conn, show=True), admin, vector, ts.Filters(), limit=50, min_similarity=-1.0,
                             probes=10)


async def main(args) -> None:
    folder = None
    if args.database_url:
        admin_url = args.database_url
    else:
        import pgserver

        folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tsbench"))
        folder.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(folder / "pgdata", cleanup_mode=None if args.keep else "delete")
        admin_url = server.get_uri()
    # --keep: one database per size, generated once and reused (migrations newer than it are applied).
    name = f"search_bench_{args.segments}" if args.keep else f"search_bench_{uuid.uuid4().hex[:8]}"
    admin = await db.connect(admin_url)
    exists = await admin.fetchval("select 1 from pg_database where datname = $1", name)
    if not exists:
        await admin.execute(f'create database "{name}"')
    conn = await db.connect(db.with_database(admin_url, name))
    try:
        await db.migrate(conn)
        if not await conn.fetchval("select exists (select 1 from transcript_segments)"):
            print(f"generating {args.segments:,} segments ...", flush=True)
            await load(conn, args.segments)
        await conn.execute("delete from users where username = 'rev'")  # measure() adds it anew
        if args.vector_index:
            t = time.perf_counter()
            await conn.execute("set maintenance_work_mem = '2GB'")
            await conn.execute(
                "create index if not exists transcript_segments_embedding on transcript_segments using hnsw "
                "(embedding halfvec_cosine_ops)"
            )
            print(f"  HNSW index: {time.perf_counter() - t:.0f} s", flush=True)
        elif not await conn.fetchval("select exists (select 1 from embedding_lists)") or args.retrain:
            t = time.perf_counter()
            lists = await embedding_lists.train(conn)
            print(f"  embedding lists: {lists} trained and filled in {time.perf_counter() - t:.0f} s", flush=True)
        # Index-only scans of the lists' embeddings (migration 0015) skip the heap only on all-visible pages.
        await conn.execute("vacuum (analyze) segment_lists")
        count = await conn.fetchval("select count(*) from transcript_segments")
        size = await conn.fetchval("select pg_size_pretty(pg_total_relation_size('transcript_segments'))")
        print(f"{count:,} segments, {size} with indexes", flush=True)
        if args.explain:
            await explain(conn)
        print(f"load average: {Path('/proc/loadavg').read_text().strip()}", flush=True)
        await measure(conn, args.repeats, 0 if args.vector_index else args.probes)
    finally:
        await conn.close()
        if not args.keep:
            await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()
        if folder and not args.keep:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=1_000_000, help="segments to generate (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=20, help="runs per kind of query")
    parser.add_argument("--vector-index", action="store_true", help="build the HNSW index (needs AVX-512 on the "
                        "embedded server)")
    parser.add_argument("--probes", type=int, default=10, help="embedding lists read per semantic query "
                        "(search.semantic_probes)")
    parser.add_argument("--explain", action="store_true", help="print the query plans of a few keyword searches")
    parser.add_argument("--keep", help="keep the embedded server and the generated data in this folder and reuse "
                        "them next time (generate once)")
    parser.add_argument("--retrain", action="store_true", help="train the embedding lists again on kept data")
    parser.add_argument("--database-url", help="an admin URL of a PostgreSQL server with pgvector and pg_trgm "
                        "(default: a throw-away embedded server)")
    asyncio.run(main(parser.parse_args()))
