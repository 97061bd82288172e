"""Scoring a call again under the current version of its scorecard, from the stored transcript and
metrics: no audio, no model. Used when a scorecard changes (`telesales qa rescore`).

The new result is stored beside the old one under the new scorecard version;
a result already current is left alone, so a re-run changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
import zoneinfo
from dataclasses import dataclass, fields
from types import SimpleNamespace

import asyncpg

from crm import qa_jobs, transcripts
from crm.errors import NotFound, UserError
from crm.fields import parse_call_id
from qa.metrics import TalkMetrics, union
from qa.scorecard import Scorecard, load_scorecard
from qa.scoring import Call, score_call
from qa.segments import TranscriptSegment


def speech_bounds(analysis) -> dict:
    """First and last speech on any channel, as stored with a result (None: no speech was transcribed)."""
    speech = union(*analysis.spans.values())
    if not speech or not analysis.transcript:
        return {"speech_start_s": None, "speech_end_s": None}
    return {"speech_start_s": round(speech[0].start, 3), "speech_end_s": round(speech[-1].end, 3)}


@dataclass(frozen=True)
class Rescored:
    call_id: str
    scorecard: str
    old_version: str
    new_version: str
    old_score: float | None
    new_score: float | None
    stored: bool  # False: the stored result was already of the current version

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("call_id", "scorecard", "old_version", "new_version", "old_score",
                                              "new_score", "stored")}


def _call(row: asyncpg.Record) -> Call:
    transcript = tuple(
        TranscriptSegment(float(s["start"]), float(s["end"]), s["speaker"], s["text"], float(s.get("confidence", 1)))
        for s in row["transcript"]
    )
    metrics = TalkMetrics(**{f.name: row["metrics"].get(f.name) for f in fields(TalkMetrics)})
    start, end = row["speech_start_s"], row["speech_end_s"]
    if start is None and transcript:  # stored before the speech bounds were: the transcript's are close
        start, end = min(s.start for s in transcript), max(s.end for s in transcript)
    return Call(
        transcript=transcript,
        metrics=metrics,
        speech_start=None if start is None else float(start),
        speech_end=None if end is None else float(end),
        disposition=row["disposition"],
    )


def _number(value) -> float | None:
    return None if value is None else float(value)


async def _rescore_one(conn: asyncpg.Connection, row: asyncpg.Record, card: Scorecard) -> Rescored:
    old = _number(row["score"])
    if row["scorecard_version"] == card.version:
        return Rescored(str(row["call_id"]), row["scorecard"], card.version, card.version, old, old, False)
    started = time.monotonic()
    result = score_call(card, _call(row))
    result_id = await qa_jobs.insert_result(
        conn,
        row["call_id"],
        row["recording_sha256"],
        row["scorecard"],
        {
            "scorecard_version": card.version,
            "model": row["model"],
            "duration_s": row["duration_seconds"],
            "transcript": row["transcript"],
            "metrics": row["metrics"],
            "checks": [c.to_json() for c in result.checks],
            "categories": result.categories,
            "score": result.score,
            "timings": {"rescore_s": round(time.monotonic() - started, 4), "rescored_from": row["scorecard_version"]},
            "speech_start_s": row["speech_start_s"],
            "speech_end_s": row["speech_end_s"],
        },
    )
    if result_id is not None:
        await transcripts.move_to_result(conn, row["call_id"], result_id)
    return Rescored(str(row["call_id"]), row["scorecard"], row["scorecard_version"], card.version, old,
                    result.score, result_id is not None)


async def rescore(
    conn: asyncpg.Connection,
    settings: SimpleNamespace,
    *,
    call_id: uuid.UUID | None = None,
    scorecard: str | None = None,
    since: dt.datetime | None = None,
) -> list[Rescored]:
    """Re-score the newest result of each matching (call, scorecard) under the scorecard's current version."""
    rows = await qa_jobs.latest_results(conn, call_id=call_id, scorecard=scorecard, since=since)
    if call_id is not None and not rows:
        raise NotFound(f"call {call_id} has no QA result to re-score")
    cards: dict[str, Scorecard] = {}
    done = []
    for row in rows:
        name = row["scorecard"]
        if name not in cards:
            cards[name] = load_scorecard(name, settings.config_dir)
        done.append(await _rescore_one(conn, row, cards[name]))
    return done


def parse_since(value: str, time_zone: str) -> dt.datetime:
    """A date (midnight there) or a date and time; without an offset it is read in time_zone."""
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise UserError(f"--since must be a date like 2025-03-01 or a time like 2025-03-01T09:00+08:00, "
                        f"got {value!r}", fields=["since"]) from None
    return when if when.tzinfo else when.replace(tzinfo=zoneinfo.ZoneInfo(time_zone))


def rescore_command(args, settings: SimpleNamespace, with_store) -> int:
    """`telesales qa rescore`: exit 0 when every matching result is current; 1 for an unknown call."""
    call_id = parse_call_id(args.call) if args.call else None
    since = parse_since(args.since, settings.crm.default_time_zone) if args.since else None
    if args.scorecard:
        load_scorecard(args.scorecard, settings.config_dir)  # an unknown name fails before the database opens
    done = asyncio.run(
        with_store(settings, lambda conn: rescore(conn, settings, call_id=call_id, scorecard=args.scorecard,
                                                  since=since))
    )
    if args.json:
        print(json.dumps([r.to_json() for r in done], ensure_ascii=False))
        return 0
    for r in done:
        if r.stored:
            print(f"{r.call_id} {r.scorecard}: {_shown(r.old_score)} ({r.old_version}) -> "
                  f"{_shown(r.new_score)} ({r.new_version})")
    fresh = sum(r.stored for r in done)
    print(f"{fresh} result(s) re-scored, {len(done) - fresh} already current")
    return 0


def _shown(score: float | None) -> str:
    return "unscorable" if score is None else f"{score:g}"
