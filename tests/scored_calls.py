"""Calls with a stored QA result, built through the real queue (enqueue, claim, store_result) and scorecard.

The transcript is given as text; the checks and score come from applying the
real `sales` scorecard to it, so overrides recompute against real weights.
"""

from __future__ import annotations

import datetime as dt

from crm import calls, qa_jobs
from qa.metrics import talk_metrics
from qa.scorecard import load_scorecard
from qa.scoring import Call, score_call
from qa.segments import AGENT, CUSTOMER, Span, TranscriptSegment
from telesales.settings import CONFIG_DIR

POLICY = qa_jobs.QueuePolicy(lease_s=60, max_attempts=3, backoff_s=0.0, backoff_max_s=0.0)


def scored(lines: list[tuple[str, float, float, str]], disposition: str | None = None) -> dict:
    """A result dict as the worker stores it, for lines of (speaker, start, end, text)."""
    segments = tuple(TranscriptSegment(a, b, s, text, 0.9) for s, a, b, text in lines)
    spans = {who: [Span(a, b) for s, a, b, _ in lines if s == who] for who in (AGENT, CUSTOMER)}
    metrics = talk_metrics(spans[AGENT], spans[CUSTOMER], list(segments))
    scorecard = load_scorecard("sales", CONFIG_DIR)
    result = score_call(
        scorecard, Call(segments, metrics, lines[0][1], max(b for _, _, b, _ in lines), disposition)
    )
    return {
        "scorecard_version": scorecard.version,
        "model": "test",
        "duration_s": max(b for _, _, b, _ in lines) + 1.0,
        "transcript": [s.to_json() for s in segments],
        "metrics": metrics.to_json(),
        "checks": [c.to_json() for c in result.checks],
        "categories": result.categories,
        "score": result.score,
        "timings": {},
    }


async def scored_call(
    conn,
    lines: list[tuple[str, float, float, str]],
    *,
    agent_id: int | None = None,
    campaign_id: int | None = None,
    disposition: str | None = None,
    started: dt.datetime | None = None,
    recording_path: str = "recordings/none.wav",
) -> str:
    """A call with its scored transcript stored (and indexed for search); returns the call id."""
    row = await calls.create_call(
        conn, direction="outbound", agent_id=agent_id, campaign_id=campaign_id, now=started
    )
    call_id = str(row["id"])
    await conn.execute(
        "update calls set disposition = $2, recording_path = $3, recording_state = 'complete' where id = $1",
        row["id"], disposition, recording_path,
    )
    await qa_jobs.enqueue(conn, call_id, recording_path, "sales")
    job = await qa_jobs.claim(conn, "test-worker", POLICY)
    assert str(job["call_id"]) == call_id
    assert await qa_jobs.store_result(conn, job, scored(lines, disposition))
    return call_id
