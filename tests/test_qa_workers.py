"""`telesales serve` runs QA workers as processes of their own, restarts one that dies, stops them cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from telesales.qa_workers import qa_workers
from telesales.settings import SettingsError, load_settings


async def _until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def _connected_workers(conn, count: int, timeout: float = 60) -> None:
    """Wait until count other sessions hold the database: the workers are past start-up, in their loop."""
    deadline = time.monotonic() + timeout
    query = "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
    while await conn.fetchval(query) < count:
        assert time.monotonic() < deadline, f"{count} workers never connected"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("qa-workers-data")


@pytest.mark.timeout(120)
async def test_workers_run_apart_from_the_service_come_back_after_a_kill_and_stop_cleanly(conn, db_url, data_dir):
    settings = load_settings(environ={"TELESALES_DATA_DIR": str(data_dir), "TELESALES_QA_WORKERS": "2"})
    workers = qa_workers(settings, db_url)
    workers.backoff_s = 0.2
    await workers.start()
    try:
        first = await _until(lambda: all(workers.pids()) and workers.pids(), 30, "two worker processes")
        assert os.getpid() not in first and len(set(first)) == 2
        os.kill(first[0], signal.SIGKILL)
        again = await _until(lambda: workers.pids()[0] not in (None, first[0]) and workers.pids(), 30, "a restart")
        assert workers.restarts == [1, 0] and workers.exit_codes[0] == -signal.SIGKILL
        assert again[1] == first[1]
        await _connected_workers(conn, 2)
    finally:
        await workers.stop()
    assert workers.exit_codes == [0, 0]  # SIGTERM: a clean exit, not a kill
    assert workers.pids() == [None, None]
    assert not any(_alive(pid) for pid in [*first, *again])


async def test_a_worker_that_cannot_start_is_restarted_with_a_growing_delay(db_url, data_dir):
    env = {"TELESALES_DATA_DIR": str(data_dir), "TELESALES_QA_WORKERS": "1", "TELESALES_QA_MODEL": "/nowhere/model"}
    settings = load_settings(environ=env)
    workers = qa_workers(settings, db_url)
    workers.env |= {"TELESALES_QA_MODEL": "/nowhere/model"}
    workers.backoff_s = 0.1
    await workers.start()
    try:
        await _until(lambda: workers.restarts[0] >= 3, 60, "three restarts")
        assert workers.exit_codes[0] == 1  # "no model": the worker's own exit, not a crash
    finally:
        await workers.stop()
    assert workers.pids() == [None]


def test_a_negative_worker_count_is_a_settings_error(db_url):
    settings = load_settings(environ={"TELESALES_QA_WORKERS": "-1"})
    with pytest.raises(SettingsError, match="qa.workers"):
        qa_workers(settings, db_url)


@pytest.mark.timeout(120)
async def test_serve_starts_its_workers_as_child_processes_and_stops_them_on_sigterm(conn, db_url, data_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"TELESALES_DATABASE_URL": db_url, "TELESALES_DATA_DIR": str(data_dir),
                        "TELESALES_HTTP_PORT": str(port), "TELESALES_QA_WORKERS": "2",
                        # only the workers as children: no seats, no demo trunk
                        "TELESALES_TELEPHONY_SEATS": "0", "TELESALES_TELEPHONY_DEMO_TRUNK": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "telesales", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        while not any(re.search("running at", line) for line in seen):
            line = proc.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        children = await _until(lambda: len(kids := _children(proc.pid)) == 2 and kids, 30, "two workers")
        await _connected_workers(conn, 3)  # the service's pool and the two workers
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not any(_alive(pid) for pid in children)
