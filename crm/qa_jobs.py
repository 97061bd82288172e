"""The QA job queue on PostgreSQL: enqueue, claim with a lease, complete, fail with backoff, park.

A job is claimed with `FOR UPDATE SKIP LOCKED`, so two workers never take the
same row, and holds a lease (`lease_until`). A worker that dies stops renewing
it; once it lapses the job is claimable again. Every claim counts as an
attempt, so a recording that kills its worker each time is parked after
`max_attempts` claims instead of looping forever. Times come from the
database clock, the one clock all workers share.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from crm.transcripts import index_result


@dataclass(frozen=True)
class QueuePolicy:
    lease_s: float
    max_attempts: int
    backoff_s: float  # first retry delay; doubles with each attempt
    backoff_max_s: float


async def enqueue(
    conn: asyncpg.Connection,
    call_id: uuid.UUID | str,
    recording_path: str,
    scorecard: str,
    recording_sha256: str | None = None,
) -> int:
    """Queue a call's recording for scoring; a second enqueue of the same call and scorecard is a no-op.

    Returns the job id (the existing one when already queued or done).
    """
    job_id = await conn.fetchval(
        """insert into qa_jobs (call_id, recording_path, recording_sha256, scorecard)
           values ($1, $2, $3, $4)
           on conflict (call_id, scorecard) do nothing
           returning id""",
        uuid.UUID(str(call_id)),
        recording_path,
        recording_sha256,
        scorecard,
    )
    if job_id is None:
        job_id = await conn.fetchval(
            "select id from qa_jobs where call_id = $1 and scorecard = $2", uuid.UUID(str(call_id)), scorecard
        )
    return job_id


async def claim(conn: asyncpg.Connection, worker_id: str, policy: QueuePolicy) -> asyncpg.Record | None:
    """Take the next ready job (queued and due, or running with a lapsed lease), or None."""
    async with conn.transaction():
        # A job whose lease lapsed on its last allowed attempt killed its workers every time: park it.
        await conn.execute(
            """update qa_jobs set state = 'parked', lease_until = null, updated_at = now(),
                   last_error = coalesce(last_error || '; ', '') || 'lease expired on attempt ' || attempts
               where state = 'running' and lease_until < now() and attempts >= $1""",
            policy.max_attempts,
        )
        return await conn.fetchrow(
            """update qa_jobs set state = 'running', attempts = attempts + 1, worker_id = $1,
                   lease_until = now() + make_interval(secs => $2), updated_at = now()
               where id = (
                   select id from qa_jobs
                   where (state = 'queued' and run_after <= now()) or (state = 'running' and lease_until < now())
                   order by run_after, id
                   limit 1
                   for update skip locked)
               returning *""",
            worker_id,
            policy.lease_s,
        )


async def renew(conn: asyncpg.Connection, job_id: int, worker_id: str, policy: QueuePolicy) -> bool:
    """Extend the lease of a job this worker holds; False when it has lost it."""
    status = await conn.execute(
        """update qa_jobs set lease_until = now() + make_interval(secs => $3), updated_at = now()
           where id = $1 and worker_id = $2 and state = 'running'""",
        job_id,
        worker_id,
        policy.lease_s,
    )
    return status == "UPDATE 1"


async def complete(conn: asyncpg.Connection, job_id: int) -> None:
    await conn.execute(
        """update qa_jobs set state = 'done', lease_until = null, last_error = null, updated_at = now()
           where id = $1""",
        job_id,
    )


async def fail(
    conn: asyncpg.Connection, job_id: int, worker_id: str, error: str, policy: QueuePolicy, *, permanent: bool = False
) -> str:
    """Record a failed attempt: queue it again after a backoff, or park it. Returns the new state.

    A permanent failure (a recording that cannot be read) is parked at once: retrying cannot help.
    A worker that lost its lease to another changes nothing and gets the job's current state.
    """
    row = await conn.fetchrow(
        """update qa_jobs set
               state = case when $4 or attempts >= $5 then 'parked' else 'queued' end,
               run_after = now() + make_interval(secs => least($6 * power(2, greatest(attempts - 1, 0)), $7)),
               lease_until = null, last_error = $3, updated_at = now()
           where id = $1 and worker_id = $2 and state = 'running'
           returning state""",
        job_id,
        worker_id,
        error,
        permanent,
        policy.max_attempts,
        policy.backoff_s,
        policy.backoff_max_s,
    )
    if row is None:
        return await conn.fetchval("select state from qa_jobs where id = $1", job_id)
    return row["state"]


async def parked_jobs(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Jobs that gave up, newest first, with their last error: what an admin must look at."""
    return await conn.fetch("select * from qa_jobs where state = 'parked' order by updated_at desc")


async def store_result(conn: asyncpg.Connection, job: asyncpg.Record, result: dict) -> bool:
    """Store a job's result and mark the job done, in one transaction.

    result holds scorecard_version, model, duration_s, transcript, metrics,
    checks, categories, score and timings. Returns False when a result for the
    same call, scorecard and version was already stored (it is kept, not duplicated).
    """
    async with conn.transaction():
        inserted = await conn.fetchval(
            """insert into qa_results (call_id, recording_sha256, scorecard, scorecard_version, model,
                   duration_seconds, transcript, metrics, checks, categories, score, timings)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               on conflict (call_id, scorecard, scorecard_version) do nothing
               returning id""",
            job["call_id"],
            job["recording_sha256"],
            job["scorecard"],
            result["scorecard_version"],
            result["model"],
            result["duration_s"],
            result["transcript"],
            result["metrics"],
            result["checks"],
            result["categories"],
            result["score"],
            result["timings"],
        )
        await index_result(conn, inserted, job["call_id"], result["transcript"])
        await complete(conn, job["id"])
    return inserted is not None


async def results_for_call(conn: asyncpg.Connection, call_id: uuid.UUID | str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select * from qa_results where call_id = $1 order by created_at", uuid.UUID(str(call_id))
    )
