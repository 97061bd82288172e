"""QA worker processes beside the service: `telesales serve` starts qa.workers of them, restarts
one that dies (with a growing delay, so a worker that cannot start does not spin), and stops them
on shutdown.

Transcription never runs in the service process: it would take the CPU from
real-time call audio. Each worker is `telesales qa worker` in its own process
and session (a Ctrl-C in the terminal reaches the service, which then stops
the workers in order), told to exit when the service dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from types import SimpleNamespace

from telesales.settings import SettingsError

log = logging.getLogger("telesales.qa_workers")


class QaWorkers:
    def __init__(
        self,
        count: int,
        argv: list[str],
        env: dict[str, str],
        *,
        stop_timeout_s: float = 10.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        healthy_after_s: float = 60.0,  # a worker that ran this long restarts after the first delay again
    ) -> None:
        self.count = count
        self.argv = argv
        self.env = env
        self.stop_timeout_s = stop_timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.healthy_after_s = healthy_after_s
        self.restarts = [0] * count
        self.exit_codes: list[int | None] = [None] * count  # each slot's last exit code
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()

    def pids(self) -> list[int | None]:
        """The running worker processes by slot (None: between restarts)."""
        return [p.pid if p is not None and p.returncode is None else None for p in self._procs]

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(n), name=f"qa-worker-{n + 1}") for n in range(self.count)]

    async def _supervise(self, slot: int) -> None:
        delay = self.backoff_s
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*self.argv, env=self.env, start_new_session=True)
            self._procs[slot] = proc
            if self._stopping.is_set():  # stop() came while this one was starting
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            log.info("qa worker started", extra={"slot": slot + 1, "pid": proc.pid})
            code = self.exit_codes[slot] = await proc.wait()
            if self._stopping.is_set():
                log.info("qa worker stopped", extra={"slot": slot + 1, "pid": proc.pid, "exit_code": code})
                return
            if time.monotonic() - started >= self.healthy_after_s:
                delay = self.backoff_s
            self.restarts[slot] += 1
            log.warning("qa worker exited; restarting", extra={"slot": slot + 1, "pid": proc.pid, "exit_code": code,
                                                               "restart_in_s": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def stop(self) -> None:
        """SIGTERM every worker (each gives back its job and exits), SIGKILL any still there after the timeout."""
        self._stopping.set()
        live = [p for p in self._procs if p is not None and p.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.stop_timeout_s)
            for proc in live:
                if proc.returncode is None:
                    log.warning("qa worker did not stop in time; killing it", extra={"pid": proc.pid})
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if pending:
                await asyncio.wait(pending, timeout=5)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


def worker_count(qa: SimpleNamespace) -> int:
    if qa.workers < 0:
        raise SettingsError("qa.workers: must be 0 or more")
    if qa.worker_stop_seconds <= 0:
        raise SettingsError("qa.worker_stop_seconds: must be positive")
    return qa.workers


def qa_workers(settings: SimpleNamespace, database_url: str) -> QaWorkers:
    """The supervisor for settings.qa.workers workers on the service's database, data folder and settings."""
    config = ["--config", str(settings.config_file)] if getattr(settings, "config_file", None) else []
    argv = [sys.executable, "-m", "telesales", *config, "qa", "worker", "--parent-pid", str(os.getpid())]
    # The workers read the same settings; the database and data folder the service resolved are passed
    # as they are, so an embedded database is found, not started a second time.
    env = os.environ | {"TELESALES_DATABASE_URL": database_url, "TELESALES_DATA_DIR": str(settings.data_dir)}
    return QaWorkers(worker_count(settings.qa), argv, env, stop_timeout_s=settings.qa.worker_stop_seconds)
