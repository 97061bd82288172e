"""`telesales qa worker`: claim a QA job, run the pipeline in this process, store the result, repeat.

The model loads once per worker process. The analysis runs on a thread so
the event loop can keep renewing the job's lease meanwhile; a worker that is
killed stops renewing, its lease lapses, and another worker takes the job.
A result is stored once per (call, scorecard, scorecard version), so a job
finished twice still leaves one result.

SIGTERM (or SIGINT) stops a worker cleanly: a job under analysis is given back
at once (another worker can claim it without waiting for the lease to lapse)
and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from types import SimpleNamespace

import aiohttp
import asyncpg

from crm import qa_jobs
from qa.audio import RecordingError, read_recording
from qa.embeddings import embed_call_segments
from qa.model_files import ModelFilesError
from qa.pipeline import analyse, load_model, qa_options, result_json, score
from qa.recording_fetch import WorkerTokenRefused, recording_file, remote_recordings
from qa.rescore import speech_bounds
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


class Stopping(Exception):
    """A stop was asked for while the worker waited on its analysis thread."""


class Worker:
    def __init__(self, conn: asyncpg.Connection, settings: SimpleNamespace, model, worker_id: str):
        self.conn = conn
        self.settings = settings
        self.model = model
        self.worker_id = worker_id
        self.options = qa_options(settings.qa)
        self.policy = queue_policy(settings.qa)
        self.remote = remote_recordings(settings.qa)
        self.model_label = _model_label(settings)
        self.attempted = 0
        self.stopping = asyncio.Event()
        # Model loading and analysis run here, not on asyncio's default executor, so that a stop
        # never waits for a thread that cannot be interrupted (see worker_command).
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="qa-analysis")
        self.abandoned_thread = False  # a thread was still busy when the worker stopped
        self.fatal: str | None = None  # why the worker gave up (a refused token), else None
        self._http: aiohttp.ClientSession | None = None
        self.model_workers = 1  # CTranslate2 replicas beyond the post-call lanes (the live path has its own model)
        self.live_threads: int | None = None  # with the live path: its own model's threads (live.threads)
        self.live_model = None

    def stop(self) -> None:
        self.stopping.set()

    async def _stoppable(self, future):
        """Await a thread's future unless a stop comes first (then Stopping; the thread runs on)."""
        work = asyncio.ensure_future(future)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if work.done():
            return work.result()
        self.abandoned_thread = True
        raise Stopping

    async def load(self) -> bool:
        """Load the model on the worker's thread; False when stopped first."""
        loop = asyncio.get_running_loop()
        try:
            self.model = await self._stoppable(loop.run_in_executor(self.executor, load_model, self.settings,
                                                                          self.model_workers))
            if self.live_threads is not None:
                # Its own Whisper instance: a live utterance never queues behind a post-call batch.
                from qa.live_transcribe import load_live_model

                self.live_model = await self._stoppable(loop.run_in_executor(
                    self.executor, load_live_model, self.settings, self.live_threads))
        except Stopping:
            return False
        return True

    async def run(self, *, once: bool = False) -> int:
        """Process jobs until stopped; with once, stop when none is ready. Returns how many jobs were attempted."""
        if self.remote is not None:
            self._http = aiohttp.ClientSession()
        try:
            while not self.stopping.is_set():
                job = await qa_jobs.claim(self.conn, self.worker_id, self.policy)
                if job is None:
                    if once:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), self.settings.qa.worker_poll_seconds)
                    continue
                self.attempted += 1
                await self.process(job)
        finally:
            if self._http is not None:
                await self._http.close()
        return self.attempted

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
        loop = asyncio.get_running_loop()
        try:
            scorecard = load_scorecard(job["scorecard"], self.settings.config_dir)
            async with recording_file(job, self.settings.data_dir, self.remote, self._http) as path:
                recording = await asyncio.to_thread(read_recording, path)
            read_s = time.monotonic() - started
            work = loop.run_in_executor(self.executor, analyse, recording, self.model, self.options)
            analysis = await self._holding_lease(job, self._stoppable(work))
            analyse_s = time.monotonic() - started - read_s
            disposition = await self.conn.fetchval(
                """select coalesce(c.disposition, d.code) from calls c
                   left join call_dispositions d on d.call_id = c.id where c.id = $1""",
                job["call_id"],
            )
            outcome = result_json(analysis, score(analysis, scorecard, disposition))
        except Stopping:
            released = await qa_jobs.release(self.conn, job["id"], self.worker_id)
            log.info("qa job given back: worker stopping", extra=ids | {"released": released})
            return
        except WorkerTokenRefused as e:
            await qa_jobs.release(self.conn, job["id"], self.worker_id)
            self.fatal = str(e)
            self.stop()
            log.error("worker token refused; stopping", extra=ids | {"error": str(e)})
            return
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
                **speech_bounds(analysis),
            },
        )
        await embed_call_segments(self.conn, job["call_id"])  # semantic search (issue #6)
        log.info("qa job done", extra=ids | {"score": outcome["score"], "stored": stored} | timings)


async def _run_live(worker: Worker, database_url: str) -> None:
    """The live path (qa.live_worker) on its own small pool, until the worker stops."""
    from crm import db
    from qa.live import live_options
    from qa.live_worker import LiveWorker

    pool = await db.create_pool(database_url, 1, 4)
    try:
        live = LiveWorker(pool, worker.live_model, worker.worker_id, live_options(worker.settings), worker.options,
                          token=worker.settings.qa.worker_token.strip())
        await live.run(worker.stopping)
    finally:
        await pool.close()


async def run_worker(conn: asyncpg.Connection, settings: SimpleNamespace, *, worker_id: str, once: bool,
                     live_database_url: str | None = None) -> Worker:
    """With live_database_url, the worker also transcribes live calls (settings.live) while it takes jobs."""
    # faster-whisper logs every transcribe call at INFO.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    worker = Worker(conn, settings, None, worker_id)
    if live_database_url:
        from qa.live import live_options

        worker.live_threads = live_options(settings).threads
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    live = None
    try:
        if await worker.load():
            log.info("qa worker ready", extra={"worker_id": worker_id, "pid": os.getpid()})
            if live_database_url:
                live = asyncio.create_task(_run_live(worker, live_database_url), name="qa-live")
            await worker.run(once=once)
    finally:
        if live is not None:
            worker.stop()
            with contextlib.suppress(Exception):
                await live
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        signal.signal(signal.SIGTERM, _exit_now)
    return worker


def exit_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when the parent (the service) dies; exit now if it died already."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


def _exit_now(signum, frame) -> None:
    # No job is held here (before or after the job loop). SystemExit raised into whatever runs at
    # that moment can surface as another error (seen: inside asyncpg's protocol code, exit 1), so end
    # the process directly.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def worker_command(args, settings: SimpleNamespace, with_store) -> int:
    """Exit 0 after --once drains the queue or on SIGTERM; 1 for a missing model or a refused token."""
    worker_id = args.worker_id or default_worker_id()
    # Until the job loop runs (it handles SIGTERM itself) the worker holds no job: a stop just ends it.
    signal.signal(signal.SIGTERM, _exit_now)
    if getattr(args, "parent_pid", None):
        exit_with_parent(args.parent_pid)
    # A bad setting stops the worker before it touches the database or loads the model.
    queue_policy(settings.qa)
    qa_options(settings.qa)
    remote_recordings(settings.qa)
    live = settings.live.enabled and not args.once
    if live:
        from qa.live import live_options

        live_options(settings)

    async def work(conn):
        from telesales.store import database_url  # resolved already by with_store: no second server

        url = await database_url(settings) if live else None
        return await run_worker(conn, settings, worker_id=worker_id, once=args.once, live_database_url=url)

    try:
        worker = asyncio.run(with_store(settings, work))
    except ModelFilesError as e:
        print(f"telesales: {e}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _exit_now)  # closing the loop put back the default handler
    stopped = " (stopped)" if worker.stopping.is_set() else ""
    print(f"qa worker {worker_id}: {worker.attempted} job(s) attempted{stopped}", flush=True)
    if worker.fatal:
        print(f"telesales: {worker.fatal}", file=sys.stderr)
        return 1
    if worker.abandoned_thread:
        # The given-back job's analysis (or the model load) is native code on a thread that cannot
        # be interrupted; its result is no longer wanted, so end without waiting for it.
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
    worker.executor.shutdown()
    return 0
