"""The QA job queue on PostgreSQL: enqueue, claim with a lease, complete, fail with backoff, park.

A job is claimed with `FOR UPDATE SKIP LOCKED`, so two workers never take the
same row, and holds a lease (`lease_until`). A worker that dies stops renewing
it; once it lapses the job is claimable again. Every claim counts as an
attempt, so a recording that kills its worker each time is parked after
`max_attempts` claims instead of looping forever. Times come from the
database clock, the one clock all workers share.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from crm import audit
from crm.errors import IllegalTransition, NotFound, UserError
from crm.paging import page_of
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


# A recording is ready for QA once closed: at hang-up ('complete') or after a crash ('repaired').
READY_RECORDINGS = ("complete", "repaired")


async def enqueue_when_ready(conn: asyncpg.Connection, call_id: uuid.UUID | str, default_scorecard: str) -> int | None:
    """Queue the call for QA when it has both a closed recording and a disposition, else do nothing.

    Called after either one is written; whichever comes second queues the job
    (both write the call row, so the two transactions serialise on its lock and
    the later one sees the earlier one's write). The scorecard is the
    campaign's, or default_scorecard where the call has no campaign or the
    campaign keeps the column's default ('default'). Returns the job id, or
    None when the call is not ready or was queued already.
    """
    return await conn.fetchval(
        """insert into qa_jobs (call_id, recording_path, recording_sha256, scorecard)
           select c.id, c.recording_path, c.recording_sha256,
                  coalesce(nullif(nullif(k.scorecard, 'default'), ''), $2)
           from calls c left join campaigns k on k.id = c.campaign_id
           where c.id = $1
             and c.recording_state = any($3::text[]) and c.recording_path is not null
             and c.recording_sha256 is not null
             and (c.disposition is not null or exists (select from call_dispositions d where d.call_id = c.id))
           on conflict (call_id, scorecard) do nothing
           returning id""",
        uuid.UUID(str(call_id)),
        default_scorecard,
        list(READY_RECORDINGS),
    )


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


async def release(conn: asyncpg.Connection, job_id: int, worker_id: str) -> bool:
    """Give a held job back at once (its worker is stopping): claimable now, not after the lease lapses.

    The claim is not counted as an attempt: nothing failed. False when the worker no longer held it.
    """
    status = await conn.execute(
        """update qa_jobs set state = 'queued', run_after = now(), lease_until = null,
               attempts = greatest(attempts - 1, 0), updated_at = now()
           where id = $1 and worker_id = $2 and state = 'running'""",
        job_id,
        worker_id,
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


STATES = ("queued", "running", "done", "parked")
# What an admin sees of a job: no lease internals beyond who holds it and until when.
_LISTED = """j.id, j.call_id, j.scorecard, j.state, j.attempts, j.last_error, j.run_after, j.lease_until,
             j.worker_id, j.recording_path, j.created_at, j.updated_at"""


async def list_jobs(conn: asyncpg.Connection, state: str, *, page: int = 1, per_page: int = 50) -> dict:
    """Jobs in one state, the most recently changed first (parked: the latest give-ups)."""
    if state not in STATES:
        raise UserError(f"state must be one of {', '.join(STATES)}, got {state!r}", fields=["state"])
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = await conn.fetchval("select count(*) from qa_jobs where state = $1", state)
        rows = await conn.fetch(
            f"""select {_LISTED} from qa_jobs j where j.state = $1
                order by j.updated_at desc, j.id desc limit $2 offset $3""",
            state,
            per_page,
            (page - 1) * per_page,
        )
    return page_of(rows, page, per_page, total)


async def retry(conn: asyncpg.Connection, job_id: int, *, user_id: int | None) -> asyncpg.Record:
    """Put a parked job back in the queue with a fresh count of attempts (an admin fixed the cause)."""
    async with conn.transaction():
        job = await conn.fetchrow("select state, attempts, last_error from qa_jobs where id = $1 for update", job_id)
        if job is None:
            raise NotFound(f"no QA job {job_id}")
        if job["state"] != "parked":
            raise IllegalTransition(f"QA job {job_id} is {job['state']}; only a parked job can be retried",
                                    state=job["state"])
        row = await conn.fetchrow(
            f"""update qa_jobs j set state = 'queued', attempts = 0, run_after = now(), lease_until = null,
                    updated_at = now()
                where id = $1 returning {_LISTED}""",
            job_id,
        )
        await audit.record(conn, user_id, "qa_job.retry", "qa_job", job_id,
                           {"attempts": job["attempts"], "last_error": job["last_error"]})
    return row


async def insert_result(
    conn: asyncpg.Connection, call_id: uuid.UUID, recording_sha256: str | None, scorecard: str, result: dict
) -> int | None:
    """Store one result and return its id; None when the call already has one for this scorecard and version
    (kept as it is)."""
    inserted = await conn.fetchval(
        """insert into qa_results (call_id, recording_sha256, scorecard, scorecard_version, model,
               duration_seconds, transcript, metrics, checks, categories, score, timings,
               speech_start_s, speech_end_s)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           on conflict (call_id, scorecard, scorecard_version) do nothing
           returning id""",
        call_id,
        recording_sha256,
        scorecard,
        result["scorecard_version"],
        result["model"],
        result["duration_s"],
        result["transcript"],
        result["metrics"],
        result["checks"],
        result["categories"],
        result["score"],
        result["timings"],
        result.get("speech_start_s"),
        result.get("speech_end_s"),
    )
    return inserted


async def store_result(conn: asyncpg.Connection, job: asyncpg.Record, result: dict) -> bool:
    """Store a job's result and mark the job done, in one transaction.

    result holds scorecard_version, model, duration_s, transcript, metrics,
    checks, categories, score and timings (and speech_start_s, speech_end_s).
    Returns False when a result for the same call, scorecard and version was
    already stored (it is kept, not duplicated).
    """
    async with conn.transaction():
        result_id = await insert_result(conn, job["call_id"], job["recording_sha256"], job["scorecard"], result)
        await index_result(conn, result_id, job["call_id"], result["transcript"])
        await complete(conn, job["id"])
    return result_id is not None


async def latest_results(
    conn: asyncpg.Connection,
    *,
    call_id: uuid.UUID | None = None,
    scorecard: str | None = None,
    since: dt.datetime | None = None,
) -> list[asyncpg.Record]:
    """The newest result of each (call, scorecard), filtered by call, scorecard and call start; oldest call first.

    Each row also carries the call's current disposition.
    """
    return await conn.fetch(
        """select distinct on (c.created_at, r.call_id, r.scorecard) r.*,
                  coalesce(c.disposition, d.code) as disposition
           from qa_results r
           join calls c on c.id = r.call_id
           left join call_dispositions d on d.call_id = c.id
           where ($1::uuid is null or r.call_id = $1)
             and ($2::text is null or r.scorecard = $2)
             and ($3::timestamptz is null or c.created_at >= $3)
           order by c.created_at, r.call_id, r.scorecard, r.created_at desc, r.id desc""",
        call_id,
        scorecard,
        since,
    )


async def results_for_call(conn: asyncpg.Connection, call_id: uuid.UUID | str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select * from qa_results where call_id = $1 order by created_at", uuid.UUID(str(call_id))
    )
