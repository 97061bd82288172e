"""Migration 0006: results stored before it become searchable segments (the latest result of each call)."""

from __future__ import annotations

import json

from crm import db


async def test_existing_results_are_backfilled_into_segments(pg_admin_url, monkeypatch):
    name = "t_search_backfill"
    admin = await db.connect(pg_admin_url)
    await admin.execute(f'drop database if exists "{name}" with (force)')
    await admin.execute(f'create database "{name}"')
    conn = await db.connect(db.with_database(pg_admin_url, name))
    try:
        every = db._migration_files
        monkeypatch.setattr(db, "_migration_files", lambda: [m for m in every() if m[0] < 6])
        await db.migrate(conn)
        call_id = await conn.fetchval("insert into calls (direction) values ('outbound') returning id")
        old = [{"speaker": "agent", "start": 0.5, "end": 2.0, "text": "old version"}]
        new = [{"speaker": "agent", "start": 0.5, "end": 2.0, "text": "您好"},
               {"speaker": "customer", "start": 2.5, "end": 4.0, "text": "I want to CANCEL"}]
        for version, transcript in (("v1", old), ("v2", new)):
            await conn.execute(
                """insert into qa_results (call_id, scorecard, scorecard_version, model, duration_seconds,
                       transcript, metrics, checks, categories, timings, created_at)
                   values ($1, 'sales', $2, 'm', 5, $3, '{}', '[]', '{}', '{}', now() + make_interval(secs => $4))""",
                call_id, version, json.loads(json.dumps(transcript)), 1.0 if version == "v2" else 0.0,
            )
        monkeypatch.setattr(db, "_migration_files", every)
        assert 6 in await db.migrate(conn)
        rows = await conn.fetch("select seq, speaker, text, norm, grams from transcript_segments order by seq")
        assert [(r["seq"], r["speaker"], r["text"]) for r in rows] == [
            (0, "agent", "您好"), (1, "customer", "I want to CANCEL"),
        ]
        assert rows[1]["norm"] == "i want to cancel"
        assert sorted(rows[0]["grams"]) == sorted(["您", "好", "您好"])
    finally:
        await conn.close()
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()
