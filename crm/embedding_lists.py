"""The inverted lists (IVF) semantic search reads instead of every embedding.

pgvector's own indexes are out on the embedded server (its build dies with
SIGILL without AVX-512 when it builds one), and an exact scan of a million
halfvec embeddings takes seconds. So: spherical k-means centroids of the
embeddings, trained here with numpy and stored in `embedding_lists`; each
embedded segment filed in `segment_lists` under its nearest centroid by a
trigger (migration 0013), whoever writes the embedding; a search ranks the
centroids against the query and re-ranks exactly the segments of the
`probes` nearest lists, in SQL, from the copy of the embedding each entry
of `segment_lists` carries (migration 0015: a list's entries lie side by
side in an index, so a list is a few pages, not a heap page per segment),
with the access rule and filters in the same WHERE clause
(crm/transcript_search.py). Everything lives in the database,
so a restart or another process needs nothing loaded, and a segment embedded
before the first training (list -1) is read by every search.

Training is cheap to ask for (`train_if_due`): it runs once at least
MIN_ROWS segments are embedded and again whenever their number has doubled,
with about sqrt(rows) lists, so a list holds about sqrt(rows) segments.
"""

from __future__ import annotations

import logging
import math
import time

import asyncpg
import numpy as np

log = logging.getLogger("crm.embedding_lists")

DIM = 384
MIN_ROWS = 20_000  # below this an exact scan takes a few ms: lists would only cost recall
GROWTH = 2.0  # retrain when the embedded segments have grown this many times since training
SAMPLE_PER_LIST = 40  # k-means trains on this many sampled embeddings per list
ITERATIONS = 12
BATCH = 10_000


def list_count(rows: int) -> int:
    return max(1, min(8192, round(math.sqrt(rows))))


def _decode(blobs: list[bytes]) -> np.ndarray:
    """halfvec_send() bytes (int16 dim, int16 unused, dim big-endian float16s) as float32 rows."""
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), 4 + 2 * DIM)
    return raw[:, 4:].copy().view(">f2").astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def kmeans(x: np.ndarray, k: int, *, iterations: int = ITERATIONS, seed: int = 1) -> np.ndarray:
    """Spherical k-means (cosine): k unit centroids of the unit rows of x."""
    rng = np.random.default_rng(seed)
    x = _unit(x.astype(np.float32))
    centroids = _spread_seeds(x, k, rng)
    for _ in range(iterations):
        nearest = np.argmax(x @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, x)
        counts = np.bincount(nearest, minlength=k)
        empty = counts == 0
        # An empty list takes a random point, so every list stays in use.
        sums[empty] = x[rng.choice(len(x), size=int(empty.sum()), replace=False)]
        centroids = _unit(sums)
    return centroids


def _spread_seeds(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: each next seed drawn with probability by its squared distance to the nearest seed
    so far; random seeds often put two in one cluster and leave another to share a list."""
    seeds = [int(rng.integers(len(x)))]
    nearest = 2.0 - 2.0 * (x @ x[seeds[0]])  # squared distance of unit vectors
    for _ in range(k - 1):
        weights = np.maximum(nearest, 0.0)
        total = weights.sum()
        pick = int(rng.choice(len(x), p=weights / total)) if total > 0 else int(rng.integers(len(x)))
        seeds.append(pick)
        nearest = np.minimum(nearest, 2.0 - 2.0 * (x @ x[pick]))
    return x[seeds].copy()


async def embedded_rows(conn: asyncpg.Connection) -> int:
    """How many segments are embedded: the planner's estimate when large (counting a million rows takes
    a while), an exact count when small or never analysed."""
    estimate = await conn.fetchval("select reltuples::bigint from pg_class where oid = 'segment_lists'::regclass")
    if estimate is not None and estimate > 10 * MIN_ROWS:
        return int(estimate)
    return await conn.fetchval("select count(*) from segment_lists")


async def due(conn: asyncpg.Connection) -> bool:
    trained = await conn.fetchval("select trained_rows from embedding_list_training")
    rows = await embedded_rows(conn)
    return rows >= MIN_ROWS and (trained is None or rows >= GROWTH * trained)


async def train_if_due(conn: asyncpg.Connection) -> bool:
    """Train (or retrain) the lists when due; True when it did. Safe from several processes at once."""
    if not await due(conn):
        return False
    await train(conn)
    return True


async def _sample(conn: asyncpg.Connection, size: int, rows: int) -> np.ndarray:
    # A Bernoulli sample of the rows (a little over size), not a sort of all of them by random().
    percent = min(100.0, 100.0 * 1.2 * size / max(1, rows))
    rows = await conn.fetch(
        f"""select halfvec_send(embedding) as e from transcript_segments tablesample bernoulli ({percent:.6f})
            where embedding is not null limit $1""",
        size,
    )
    return _decode([r["e"] for r in rows])


async def train(conn: asyncpg.Connection, lists: int | None = None) -> int:
    """Train the centroids on a sample and file every embedded segment anew; returns the number of lists.

    One transaction: searches go on reading the old lists until it commits.
    Embedding writes wait for it (the trigger's lock), so none is filed
    under an old centroid; a second trainer waits, then finds nothing due.
    """
    started = time.perf_counter()
    rows = await conn.fetchval("select count(*) from segment_lists")
    k = lists or list_count(rows)
    if rows < k:
        raise ValueError(f"{rows} embedded segments cannot fill {k} lists")
    sample = await _sample(conn, min(rows, max(k, SAMPLE_PER_LIST * k)), rows)
    k = min(k, len(sample))  # a sample short of rows (a Bernoulli draw) trains fewer lists
    centroids = kmeans(sample, k)
    async with conn.transaction():
        await conn.execute("lock table embedding_lists in exclusive mode")
        trained = await conn.fetchval("select trained_rows from embedding_list_training")
        if lists is None and trained is not None and rows < GROWTH * trained:
            return 0  # another process trained while this one computed
        await conn.execute("delete from embedding_lists")
        await conn.executemany(
            "insert into embedding_lists (id, centroid) values ($1, $2::halfvec)",
            [(i, _vector_text(c)) for i, c in enumerate(centroids)],
        )
        filed = await _file_all(conn, centroids)
        await conn.execute(
            """insert into embedding_list_training (trained_rows, lists) values ($1, $2)
               on conflict (singleton) do update set trained_rows = excluded.trained_rows,
                   lists = excluded.lists, trained_at = now()""",
            filed, k,
        )
    if conn.is_in_transaction():
        await conn.execute("analyze segment_lists")
    else:
        # Marks the refiled pages all-visible, so a search's index-only scan of its lists (migration 0015)
        # visits no heap page; VACUUM cannot run inside a transaction.
        await conn.execute("vacuum (analyze) segment_lists")
    log.info("embedding lists trained", extra={"lists": k, "segments": filed,
                                               "seconds": round(time.perf_counter() - started, 1)})
    return k


async def _file_all(conn: asyncpg.Connection, centroids: np.ndarray) -> int:
    """File every embedded segment under its nearest centroid, a batch at a time; returns how many."""
    last, filed = 0, 0
    while True:
        batch = await conn.fetch(
            """select id, halfvec_send(embedding) as e from transcript_segments
               where id > $1 and embedding is not null order by id limit $2""",
            last, BATCH,
        )
        if not batch:
            return filed
        nearest = np.argmax(_decode([r["e"] for r in batch]) @ centroids.T, axis=1)
        ids = [r["id"] for r in batch]
        await conn.execute(
            """insert into segment_lists (segment_id, list_id, embedding)
               select u.id, u.list_id, s.embedding from unnest($1::bigint[], $2::int[]) u(id, list_id)
                   join transcript_segments s on s.id = u.id
               on conflict (segment_id) do update set list_id = excluded.list_id, embedding = excluded.embedding""",
            ids, nearest.astype(np.int32).tolist(),
        )
        last, filed = ids[-1], filed + len(ids)


def _vector_text(vector) -> str:
    return "[" + ",".join(f"{float(v):.6f}" for v in vector) + "]"
