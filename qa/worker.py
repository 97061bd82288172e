"""`telesales qa worker`: claim a QA job, run the pipeline in this process, store the result, repeat.

The model loads once per worker process. The analysis runs on a thread so
the event loop can keep renewing the job's lease meanwhile; a worker that is
killed stops renewing, its lease lapses, and another worker takes the job.
A result is stored once per (call, scorecard, scorecard version), so a job
finished twice still leaves one result.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import sys
import time
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import asyncpg

from crm import qa_jobs
from qa.audio import RecordingError, read_recording
from qa.embeddings import embed_call_segments
from qa.model_files import ModelFilesError
from qa.pipeline import analyse, load_model, qa_options, result_json, score
from qa.scorecard import ScorecardError, load_scorecard
from telesales.settings import SettingsError

log = logging.getLogger("qa.worker")


def queue_policy(qa: SimpleNamespace) -> qa_jobs.QueuePolicy:
    """The queue settings from settings.qa, checked (a bad value names its key)."""
    checks = {
        "worker_lease_seconds": qa.worker_lease_seconds > 0,
        "worker_max_attempts": qa.worker_max_attempts >= 1,
        "worker_backoff_seconds": qa.worker_backoff_seconds >= 0,
        "worker_backoff_max_seconds": qa.worker_backoff_max_seconds >= qa.worker_backoff_seconds,
        "worker_poll_seconds": qa.worker_poll_seconds > 0,
    }
    for key, ok in checks.items():
        if not ok:
            raise SettingsError(f"qa.{key}: out of range")
    return qa_jobs.QueuePolicy(
        lease_s=float(qa.worker_lease_seconds),
        max_attempts=int(qa.worker_max_attempts),
        backoff_s=float(qa.worker_backoff_seconds),
        backoff_max_s=float(qa.worker_backoff_max_seconds),
    )


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _model_label(settings: SimpleNamespace) -> str:
    name = settings.qa.model or "whisper-base (bundled)"
    return f"{name}; faster-whisper {metadata.version('faster-whisper')}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Worker:
    def __init__(self, conn: asyncpg.Connection, settings: SimpleNamespace, model, worker_id: str):
        self.conn = conn
        self.settings = settings
        self.model = model
        self.worker_id = worker_id
        self.options = qa_options(settings.qa)
        self.policy = queue_policy(settings.qa)
        self.model_label = _model_label(settings)

    async def run(self, *, once: bool = False) -> int:
        """Process jobs; with once, stop when none is ready. Returns how many jobs were attempted."""
        attempted = 0
        while True:
            job = await qa_jobs.claim(self.conn, self.worker_id, self.policy)
            if job is None:
                if once:
                    return attempted
                await asyncio.sleep(self.settings.qa.worker_poll_seconds)
                continue
            attempted += 1
            await self.process(job)

    async def _holding_lease(self, job, work):
        """Await work (a thread's future) while renewing the job's lease every third of it."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.policy.lease_s / 3)
                if done:
                    return task.result()
                if not await qa_jobs.renew(self.conn, job["id"], self.worker_id, self.policy):
                    # Another worker took it over; finishing anyway is harmless (the result is stored once).
                    log.warning("lease lost", extra={"job_id": job["id"], "call_id": str(job["call_id"])})
        finally:
            if not task.done():
                task.cancel()

    async def process(self, job: asyncpg.Record) -> None:
        ids = {"job_id": job["id"], "call_id": str(job["call_id"]), "worker_id": self.worker_id}
        log.info("qa job started", extra=ids | {"attempt": job["attempts"]})
        started = time.monotonic()
        try:
            scorecard = load_scorecard(job["scorecard"], self.settings.config_dir)
            path = self.settings.data_dir / job["recording_path"]
            if job["recording_sha256"]:
                actual = await asyncio.to_thread(_sha256, path)
                if actual != job["recording_sha256"]:
                    raise RecordingError(f"{job['recording_path']}: checksum differs from the one taken at hang-up")
            recording = await asyncio.to_thread(read_recording, path)
            read_s = time.monotonic() - started
            analysis = await self._holding_lease(job, asyncio.to_thread(analyse, recording, self.model, self.options))
            analyse_s = time.monotonic() - started - read_s
            disposition = await self.conn.fetchval(
                """select coalesce(c.disposition, d.code) from calls c
                   left join call_dispositions d on d.call_id = c.id where c.id = $1""",
                job["call_id"],
            )
            outcome = result_json(analysis, score(analysis, scorecard, disposition))
        except (RecordingError, ScorecardError) as e:
            state = await qa_jobs.fail(self.conn, job["id"], self.worker_id, e.message, self.policy, permanent=True)
            log.warning("qa job failed", extra=ids | {"error": e.message, "state": state})
            return
        except Exception as e:  # transient or unknown: retried after a backoff, parked after max attempts
            log.exception("qa job error", extra=ids)
            error = f"{type(e).__name__}: {e}"
            state = await qa_jobs.fail(self.conn, job["id"], self.worker_id, error, self.policy)
            log.warning("qa job failed", extra=ids | {"error": error, "state": state})
            return
        timings = {"read_s": round(read_s, 3), "analyse_s": round(analyse_s, 3)}
        timings["total_s"] = round(time.monotonic() - started, 3)
        stored = await qa_jobs.store_result(
            self.conn,
            job,
            {
                "scorecard_version": scorecard.version,
                "model": self.model_label,
                "duration_s": outcome["duration_s"],
                "transcript": outcome["transcript"],
                "metrics": outcome["metrics"],
                "checks": outcome["checks"],
                "categories": outcome["categories"],
                "score": outcome["score"],
                "timings": timings,
            },
        )
        await embed_call_segments(self.conn, job["call_id"])  # semantic search (issue #6)
        log.info("qa job done", extra=ids | {"score": outcome["score"], "stored": stored} | timings)


async def run_worker(conn: asyncpg.Connection, settings: SimpleNamespace, *, worker_id: str, once: bool) -> int:
    # faster-whisper logs every transcribe call at INFO.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    model = await asyncio.to_thread(load_model, settings)
    return await Worker(conn, settings, model, worker_id).run(once=once)


def worker_command(args, settings: SimpleNamespace, with_store) -> int:
    """Exit 0 after --once drains the queue; 1 for a missing model; runs until killed otherwise."""
    worker_id = args.worker_id or default_worker_id()
    # A bad setting stops the worker before it touches the database or loads the model.
    queue_policy(settings.qa)
    qa_options(settings.qa)
    try:
        attempted = asyncio.run(
            with_store(settings, lambda conn: run_worker(conn, settings, worker_id=worker_id, once=args.once))
        )
    except ModelFilesError as e:
        print(f"telesales: {e}", file=sys.stderr)
        return 1
    print(f"qa worker {worker_id}: {attempted} job(s) attempted")
    return 0
