"""The embedding lists semantic search reads (crm/embedding_lists.py, migration 0013), on the real database.

Embeddings here are generated around six well separated topics, so the one
list nearest a query holds all of its topic: the lists must then give exactly
what ranking every segment gives, and any difference is a bug, not recall.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from factories import user
from scored_calls import scored_call

from crm import embedding_lists, transcript_search
from crm.transcript_search import Filters, Viewer

ADMIN = Viewer(0, "admin")
TOPICS = 6
PER_CALL = 60


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


TOPIC_VECTORS = _unit(np.random.default_rng(5).standard_normal((TOPICS, 384)))


def near(topic: int, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """n unit vectors close to a topic (cosine about 0.9), far from the others."""
    return _unit(TOPIC_VECTORS[topic] + 0.5 * rng.standard_normal((n, 384)) / np.sqrt(384))


def text(v) -> str:
    return "[" + ",".join(f"{x:.5f}" for x in v) + "]"


async def embed(conn, call_id: str, vectors: np.ndarray) -> list[int]:
    """Store embeddings on a call's segments as the QA worker does (an UPDATE each: the trigger files them)."""
    ids = [r["id"] for r in await conn.fetch(
        "select id from transcript_segments where call_id = $1 order by seq", call_id)]
    await conn.executemany("update transcript_segments set embedding = $2::halfvec where id = $1",
                           [(i, text(v)) for i, v in zip(ids, vectors, strict=False)])
    return ids


@pytest.fixture
async def archive(conn):
    """Four calls of 60 segments, two agents; segment k of a call is about topic k % 6."""
    rng = np.random.default_rng(9)
    agents = [await user(conn, "agent") for _ in range(2)]
    calls = {}
    for n in range(4):
        lines = [("agent" if k % 2 else "customer", k * 2.0, k * 2.0 + 1.5, f"line {k} of call {n}")
                 for k in range(PER_CALL)]
        call_id = await scored_call(conn, lines, agent_id=agents[n % 2])
        vectors = np.stack([near(k % TOPICS, rng)[0] for k in range(PER_CALL)])
        await embed(conn, call_id, vectors)
        calls[call_id] = agents[n % 2]
    return agents, calls


async def search(conn, vector, probes, viewer=ADMIN, limit=20, **filters):
    rows = await transcript_search.semantic_search(conn, viewer, vector.tolist(), Filters(**filters), limit=limit,
                                                  min_similarity=-1.0, probes=probes)
    return [(r["segment_id"], round(r["rank"], 4)) for r in rows]


async def test_lists_file_each_segment_under_its_nearest_centroid_and_find_what_an_exact_scan_finds(conn, archive):
    query = near(2, np.random.default_rng(1))[0]
    # Before training every segment is unfiled (-1) and read by every search.
    assert await conn.fetchval("select count(*) from segment_lists where list_id = -1") == 4 * PER_CALL
    assert await search(conn, query, probes=1) == await search(conn, query, probes=0)

    assert await embedding_lists.train(conn, lists=TOPICS) == TOPICS
    centroids = [np.array(json.loads(r["c"])) for r in await conn.fetch(
        "select centroid::text as c from embedding_lists order by id")]
    rows = await conn.fetch("""select l.list_id, s.embedding::text as e from segment_lists l
                               join transcript_segments s on s.id = l.segment_id""")
    assert len(rows) == 4 * PER_CALL
    for r in rows:
        assert r["list_id"] == int(np.argmax(np.stack(centroids) @ np.array(json.loads(r["e"]))))
    assert len({r["list_id"] for r in rows}) == TOPICS  # one list per topic: none empty, none shared

    exact = await search(conn, query, probes=0)
    assert len(exact) == 20 and await search(conn, query, probes=1) == exact
    training = await conn.fetchrow("select trained_rows, lists from embedding_list_training")
    assert (training["trained_rows"], training["lists"]) == (4 * PER_CALL, TOPICS)


async def test_a_segment_embedded_after_training_is_filed_at_once_and_found(conn, archive):
    agents, _ = archive
    await embedding_lists.train(conn, lists=TOPICS)
    call_id = await scored_call(conn, [("customer", 1.0, 3.0, "a new call")], agent_id=agents[0])
    [segment] = await embed(conn, call_id, TOPIC_VECTORS[4][None, :])
    filed = await conn.fetchval("select list_id from segment_lists where segment_id = $1", segment)
    topic_list = await conn.fetchval(
        "select id from embedding_lists order by centroid <=> $1::halfvec limit 1", text(TOPIC_VECTORS[4]))
    assert filed == topic_list >= 0
    found = await search(conn, TOPIC_VECTORS[4], probes=1, limit=5)
    assert found[0][0] == segment and found[0][1] == pytest.approx(1.0, abs=1e-3)
    # Deleting the segment (a newer result replaces it) takes its list entry with it.
    await conn.execute("delete from transcript_segments where id = $1", segment)
    assert await conn.fetchval("select count(*) from segment_lists where segment_id = $1", segment) == 0


async def test_access_rule_and_filters_apply_inside_the_lists_and_a_narrow_one_falls_back_to_exact(conn, archive):
    agents, calls = archive
    await embedding_lists.train(conn, lists=TOPICS)
    query = near(0, np.random.default_rng(2))[0]
    agent = Viewer(agents[0], "agent")
    own = {c for c, a in calls.items() if a == agents[0]}
    # 20 wanted, 20 of the agent's segments are about topic 0: served from its list alone.
    rows = await transcript_search.semantic_search(conn, agent, query.tolist(), Filters(), limit=20,
                                                  min_similarity=-1.0, probes=1)
    assert len(rows) == 20 and {str(r["call_id"]) for r in rows} <= own
    assert await search(conn, query, 1, agent) == await search(conn, query, 0, agent)
    # 30 wanted: the list holds only 20 the agent may see, so every segment of theirs is ranked.
    wide = await search(conn, query, 1, agent, limit=30)
    assert len(wide) == 30 and wide == await search(conn, query, 0, agent, limit=30)
    segment_calls = {r["id"]: str(r["call_id"]) for r in await conn.fetch(
        "select id, call_id from transcript_segments")}
    assert {segment_calls[s] for s, _ in wide} <= own
    customer_only = await search(conn, query, 1, speaker="customer")
    assert customer_only == await search(conn, query, 0, speaker="customer")


async def test_training_is_due_once_enough_segments_are_embedded_and_again_when_they_doubled(conn, archive,
                                                                                            monkeypatch):
    agents, _ = archive
    monkeypatch.setattr(embedding_lists, "MIN_ROWS", 300)
    assert not await embedding_lists.due(conn)  # 240 embedded
    call_id = await scored_call(conn, [("agent", k, k + 0.5, f"more {k}") for k in range(PER_CALL)],
                                agent_id=agents[1])
    await embed(conn, call_id, near(3, np.random.default_rng(3), PER_CALL))
    assert await embedding_lists.train_if_due(conn)  # 300 embedded: trained, about sqrt(300) lists
    assert await conn.fetchval("select lists from embedding_list_training") == embedding_lists.list_count(300)
    assert await conn.fetchval("select count(*) from segment_lists where list_id = -1") == 0
    assert not await embedding_lists.train_if_due(conn)
    for n in range(5):
        call_id = await scored_call(conn, [("agent", k, k + 0.5, f"x{k}") for k in range(PER_CALL)])
        await embed(conn, call_id, near(n, np.random.default_rng(10 + n), PER_CALL))
    assert await embedding_lists.due(conn)  # 600 embedded: twice what the lists were trained on


async def test_too_few_segments_for_the_lists_asked_is_refused_and_changes_nothing(conn, archive):
    with pytest.raises(ValueError, match="cannot fill"):
        await embedding_lists.train(conn, lists=10_000)
    assert await conn.fetchval("select count(*) from embedding_lists") == 0


async def test_embeddings_stored_before_the_migration_are_read_by_searches_until_trained(pg_admin_url, monkeypatch):
    from crm import db

    name = "t_embedding_lists_backfill"
    admin = await db.connect(pg_admin_url)
    await admin.execute(f'drop database if exists "{name}" with (force)')
    await admin.execute(f'create database "{name}"')
    conn = await db.connect(db.with_database(pg_admin_url, name))
    try:
        every = db._migration_files
        monkeypatch.setattr(db, "_migration_files", lambda: [m for m in every() if m[0] < 13])
        await db.migrate(conn)
        call_id = await scored_call(conn, [("customer", 1.0, 2.0, "embedded before")])
        [segment] = await embed(conn, call_id, TOPIC_VECTORS[1][None, :])
        monkeypatch.setattr(db, "_migration_files", every)
        assert 13 in await db.migrate(conn)
        assert await conn.fetchval("select list_id from segment_lists where segment_id = $1", segment) == -1
        assert (await search(conn, TOPIC_VECTORS[1], probes=4))[0][0] == segment
    finally:
        await conn.close()
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


async def test_the_lists_copy_of_an_embedding_follows_the_segment_and_a_cleared_one_is_never_ranked(conn, archive):
    """Searches rank the embedding copy in segment_lists (migration 0015): it must be the segment's own."""
    agents, _ = archive
    await embedding_lists.train(conn, lists=TOPICS)
    stale = await conn.fetchval("""select count(*) from segment_lists l join transcript_segments s
                                   on s.id = l.segment_id where l.embedding <> s.embedding""")
    assert stale == 0
    call_id = await scored_call(conn, [("customer", 1.0, 3.0, "moved"), ("agent", 3.0, 4.0, "cleared")],
                                agent_id=agents[0])
    moved, cleared = await embed(conn, call_id, np.stack([TOPIC_VECTORS[4], TOPIC_VECTORS[4]]))
    assert {s for s, _ in await search(conn, TOPIC_VECTORS[4], probes=1, limit=2)} == {moved, cleared}
    # Re-embedded about another topic: filed and ranked by the new vector; cleared: gone from the lists.
    await conn.execute("update transcript_segments set embedding = $2::halfvec where id = $1", moved,
                       text(TOPIC_VECTORS[1]))
    await conn.execute("update transcript_segments set embedding = null where id = $1", cleared)
    assert await conn.fetchval("select count(*) from segment_lists where segment_id = $1", cleared) == 0
    near_old = {s for s, _ in await search(conn, TOPIC_VECTORS[4], probes=1, limit=20)}
    assert moved not in near_old and cleared not in near_old
    found = await search(conn, TOPIC_VECTORS[1], probes=1, limit=1)
    assert found[0][0] == moved and found[0][1] == pytest.approx(1.0, abs=1e-3)
    assert await search(conn, TOPIC_VECTORS[1], probes=1) == await search(conn, TOPIC_VECTORS[1], probes=0)


@pytest.mark.parametrize("shortlist", [1, 2, 8])  # times the limit: too short for half to pass, just enough, ample
async def test_a_broad_filter_checked_on_a_shortlist_gives_what_the_whole_lists_give(conn, archive, monkeypatch,
                                                                                    shortlist):
    await embedding_lists.train(conn, lists=TOPICS)
    query = near(3, np.random.default_rng(4))[0]
    exact = await search(conn, query, 0, speaker="customer", limit=15)
    monkeypatch.setattr(transcript_search, "SHORTLIST", shortlist)
    # Half the segments are the customer's: a shortlist of 15 leaves about 7 (the whole lists are asked
    # again), one of 30 about 15, one of 120 every match of the topic's list.
    assert await search(conn, query, 1, speaker="customer", limit=15) == exact
