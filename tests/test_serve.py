"""`telesales serve` on the embedded database, as `make run` starts it."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data_dir, port):
    env = {**os.environ, "TELESALES_DATA_DIR": str(data_dir), "TELESALES_HTTP_PORT": str(port),
           # The default seat and demo trunk ports may be taken by another service on this machine.
           "TELESALES_TELEPHONY_SIP_BASE_PORT": str(_free_udp_port()),
           "TELESALES_TELEPHONY_DEMO_TRUNK_PORT": str(_free_udp_port())}
    env.pop("TELESALES_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "telesales", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_line(proc, pattern, deadline_s=60):
    """Read the service's output until a line matches (or it exits, or the deadline passes)."""
    deadline = time.monotonic() + deadline_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line, seen
    raise AssertionError(f"no line matching {pattern!r} within {deadline_s}s:\n{''.join(seen)}")


async def _health_and_login(port, password):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200
        async with http.post(f"http://127.0.0.1:{port}/api/v1/session",
                             json={"username": "admin", "password": password}) as resp:
            return resp.status


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "var"
    yield folder
    pidfile = folder / "pgdata" / "postmaster.pid"
    if pidfile.exists():  # the embedded server outlives the service by design; stop it here
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


async def test_serve_answers_health_and_keeps_its_data_across_restarts(data_dir):
    port = _free_port()
    started = time.monotonic()
    proc = _start(data_dir, port)
    try:
        line, seen = _wait_for_line(proc, r"log in as 'admin' with password")
        password = re.search(r"password (\S+)", line).group(1)
        assert any(f"http://127.0.0.1:{port}" in s for s in seen)
        assert await _health_and_login(port, password) == 200
        assert time.monotonic() - started < 60
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

    proc = _start(data_dir, port)
    try:
        line, seen = _wait_for_line(proc, r"running at")
        _wait_for_line(proc, r"log in with your account")  # no second admin, no new password
        assert await _health_and_login(port, password) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
