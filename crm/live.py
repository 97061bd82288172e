"""The live transcript store: which worker transcribes which call, its segments and alerts.

Every segment and alert is written and announced on the PostgreSQL channel
`live_events` in one transaction (pg_notify is delivered at commit), so a
listener never hears of a row that is not there, and a row written is always
announced. Payloads are JSON objects with "type" = "transcript" or "alert".
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import asyncpg

from crm.json_values import json_default

EVENTS_CHANNEL = "live_events"
CALLS_CHANNEL = "live_calls"
# pg_notify refuses payloads of 8000 bytes or more; a live segment is far shorter, this only bounds a freak.
MAX_TEXT = 1500


async def claim(conn: asyncpg.Connection, call_id: uuid.UUID, worker_id: str, lease_s: float) -> bool:
    """Take the call for this worker unless another holds an unexpired lease or it was finished."""
    row = await conn.fetchrow(
        """insert into live_calls (call_id, worker_id, lease_until)
           select $1, $2, now() + make_interval(secs => $3)
           from calls where id = $1 and ended_at is null
           on conflict (call_id) do update
               set worker_id = excluded.worker_id, lease_until = excluded.lease_until, claimed_at = now()
               where live_calls.finished_at is null and live_calls.lease_until < now()
           returning call_id""",
        call_id, worker_id, lease_s,
    )
    return row is not None


async def renew(conn: asyncpg.Connection, call_id: uuid.UUID, worker_id: str, lease_s: float) -> bool:
    row = await conn.fetchrow(
        """update live_calls set lease_until = now() + make_interval(secs => $3)
           where call_id = $1 and worker_id = $2 and finished_at is null returning call_id""",
        call_id, worker_id, lease_s,
    )
    return row is not None


async def finish(conn: asyncpg.Connection, call_id: uuid.UUID, worker_id: str, outcome: str) -> None:
    await conn.execute(
        "update live_calls set finished_at = now(), outcome = $3 where call_id = $1 and worker_id = $2",
        call_id, worker_id, outcome,
    )


async def unclaimed_calls(conn: asyncpg.Connection, max_age_s: float) -> list[uuid.UUID]:
    """Calls live on a seat now that no worker holds (a missed notification, a lapsed lease)."""
    rows = await conn.fetch(
        """select c.id from calls c left join live_calls l on l.call_id = c.id
           where c.answered_at > now() - make_interval(secs => $1) and c.ended_at is null and c.seat is not null
             and (l.call_id is null or (l.finished_at is null and l.lease_until < now()))
           order by c.answered_at""",
        max_age_s,
    )
    return [r["id"] for r in rows]


def _notify_payload(event: dict) -> str:
    return json.dumps(event, default=json_default, ensure_ascii=False)


async def add_segment(conn: asyncpg.Connection, call_id: uuid.UUID, speaker: str, start_s: float, end_s: float,
                      text: str) -> dict:
    text = text[:MAX_TEXT]
    async with conn.transaction():
        row = await conn.fetchrow(
            """insert into live_segments (call_id, speaker, start_s, end_s, text) values ($1, $2, $3, $4, $5)
               returning id, created_at""",
            call_id, speaker, start_s, end_s, text,
        )
        event = {"type": "transcript", "id": row["id"], "call_id": str(call_id), "start": round(start_s, 2),
                 "end": round(end_s, 2), "speaker": speaker, "text": text, "at": row["created_at"].isoformat()}
        await conn.execute("select pg_notify($1, $2)", EVENTS_CHANNEL, _notify_payload(event))
    return event


async def add_alert(conn: asyncpg.Connection, call_id: uuid.UUID, kind: str, speaker: str | None, name: str,
                    text: str) -> dict:
    text = text[:MAX_TEXT]
    async with conn.transaction():
        row = await conn.fetchrow(
            """insert into live_alerts (call_id, kind, speaker, name, text) values ($1, $2, $3, $4, $5)
               returning id, at""",
            call_id, kind, speaker, name, text,
        )
        event = {"type": "alert", "id": row["id"], "call_id": str(call_id), "kind": kind, "speaker": speaker,
                 "text": text, "name": name, "at": row["at"].isoformat()}
        await conn.execute("select pg_notify($1, $2)", EVENTS_CHANNEL, _notify_payload(event))
    return event


def segment_event(row: asyncpg.Record) -> dict:
    """A stored segment as the same JSON the notification carried."""
    created: dt.datetime = row["created_at"]
    return {"type": "transcript", "id": row["id"], "call_id": str(row["call_id"]), "start": round(row["start_s"], 2),
            "end": round(row["end_s"], 2), "speaker": row["speaker"], "text": row["text"], "at": created.isoformat()}


async def segments(conn: asyncpg.Connection, call_id: uuid.UUID) -> list[dict]:
    rows = await conn.fetch("select * from live_segments where call_id = $1 order by id", call_id)
    return [segment_event(r) for r in rows]


async def alerts(conn: asyncpg.Connection, call_id: uuid.UUID) -> list[dict]:
    rows = await conn.fetch("select * from live_alerts where call_id = $1 order by id", call_id)
    return [{"type": "alert", "id": r["id"], "call_id": str(r["call_id"]), "kind": r["kind"], "speaker": r["speaker"],
             "text": r["text"], "name": r["name"], "at": r["at"].isoformat()} for r in rows]
