"""A QA worker on another machine: it fetches recordings through the service's API with a worker token.

The service is the real app on aiohttp's TestServer; the worker runs in this
process with its own data folder, so the recording is not on its disk and can
only arrive over HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from synth_calls import CALLS, SynthCall, rendered

from crm import calls, qa_jobs, worker_tokens
from qa.worker import Worker
from telesales.settings import load_settings

SYNTH_CACHE = Path(tempfile.gettempdir()) / "telesales-synth-calls"  # shared with the other QA tests
SHORT = SynthCall("short", (CALLS[0].lines[0], CALLS[0].lines[1], CALLS[0].lines[-2]))


@pytest.fixture(scope="module")
def worker_data_dir(tmp_path_factory):
    """The remote machine's data folder (its model cache); no recordings in it."""
    return tmp_path_factory.mktemp("remote-worker")


@pytest.fixture
async def recorded_call(app_ctx):
    """(call id, sha256, WAV bytes) of a call whose closed recording is in the service's data folder."""
    wav, _ = rendered(SHORT, SYNTH_CACHE)
    data = wav.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    async with app_ctx.pool.acquire() as c:
        call_id = str((await calls.create_call(c, direction="outbound", agent_id=None))["id"])
        relative = f"recordings/{call_id}.wav"
        (app_ctx.settings.data_dir / "recordings").mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, app_ctx.settings.data_dir / relative)
        await calls.set_recording(c, call_id, state="complete", path=relative, sha256=sha)
    return call_id, sha, data


@pytest.fixture
async def token(app_ctx):
    async with app_ctx.pool.acquire() as c:
        return (await worker_tokens.create_token(c, "qa-box-1"))[1]


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _worker_settings(client, token, data_dir):
    return load_settings(environ={
        "TELESALES_DATA_DIR": str(data_dir),
        "TELESALES_QA_RECORDINGS_URL": str(client.make_url("")),
        "TELESALES_QA_WORKER_TOKEN": token,
    })


async def test_a_worker_token_downloads_the_recording_whole_or_by_range(client, recorded_call, token):
    call_id, sha, data = recorded_call
    resp = await client.get(f"/api/v1/qa/recordings/{call_id}", headers=_bearer(token))
    assert resp.status == 200
    assert resp.headers["X-Recording-SHA256"] == sha
    assert await resp.read() == data
    resp = await client.get(f"/api/v1/qa/recordings/{call_id}", headers=_bearer(token) | {"Range": "bytes=44-1067"})
    assert resp.status == 206
    assert await resp.read() == data[44:1068]


async def test_no_wrong_or_revoked_token_gets_no_recording(client, login, app_ctx, recorded_call, token):
    call_id, _, _ = recorded_call
    url = f"/api/v1/qa/recordings/{call_id}"
    assert (await client.get(url)).status == 401
    resp = await client.get(url, headers=_bearer("tsw_" + "x" * 43))
    assert resp.status == 401 and (await resp.json())["error"] == "bad_worker_token"
    async with app_ctx.pool.acquire() as c:
        await worker_tokens.revoke(c, "qa-box-1")
    assert (await client.get(url, headers=_bearer(token))).status == 401
    await login(client, "agent")  # a session of a role other than admin does not do either
    assert (await client.get(url)).status == 403


async def test_a_call_without_a_closed_recording_is_404(client, app_ctx, token):
    async with app_ctx.pool.acquire() as c:
        call_id = (await calls.create_call(c, direction="outbound", agent_id=None))["id"]
    resp = await client.get(f"/api/v1/qa/recordings/{call_id}", headers=_bearer(token))
    assert resp.status == 404 and (await resp.json())["error"] == "no_recording"


@pytest.mark.timeout(240)
async def test_a_remote_worker_scores_a_call_from_the_service_url(client, app_ctx, recorded_call, token,
                                                                 worker_data_dir):
    call_id, sha, _ = recorded_call
    async with app_ctx.pool.acquire() as c:
        job_id = await qa_jobs.enqueue(c, call_id, f"recordings/{call_id}.wav", "sales", sha)
        settings = _worker_settings(client, token, worker_data_dir)
        assert not (settings.data_dir / f"recordings/{call_id}.wav").exists()
        worker = Worker(c, settings, None, "remote-1")
        assert await worker.load()
        assert await worker.run(once=True) == 1
        results = await qa_jobs.results_for_call(c, call_id)
        state = await c.fetchval("select state from qa_jobs where id = $1", job_id)
        used = await c.fetchval("select last_used_at from qa_worker_tokens where name = 'qa-box-1'")
    assert state == "done" and len(results) == 1
    assert {s["speaker"] for s in results[0]["transcript"]} == {"agent", "customer"}
    assert used is not None
    assert not list(Path(tempfile.gettempdir()).glob(f"qa-{call_id}-*"))  # the downloaded copy is gone


async def test_a_download_that_does_not_match_the_checksum_is_parked(client, app_ctx, recorded_call, token, tmp_path):
    call_id, _, _ = recorded_call
    async with app_ctx.pool.acquire() as c:
        job_id = await qa_jobs.enqueue(c, call_id, f"recordings/{call_id}.wav", "sales", "0" * 64)
        await Worker(c, _worker_settings(client, token, tmp_path), None, "remote-1").run(once=True)
        job = await c.fetchrow("select state, last_error from qa_jobs where id = $1", job_id)
    assert job["state"] == "parked" and "checksum" in job["last_error"]


async def test_a_revoked_token_stops_the_worker_and_gives_the_job_back(client, app_ctx, recorded_call, token,
                                                                      tmp_path):
    call_id, sha, _ = recorded_call
    async with app_ctx.pool.acquire() as c:
        job_id = await qa_jobs.enqueue(c, call_id, f"recordings/{call_id}.wav", "sales", sha)
        await worker_tokens.revoke(c, "qa-box-1")
        worker = Worker(c, _worker_settings(client, token, tmp_path), None, "remote-1")
        await worker.run()  # without --once: it stops by itself
        job = await c.fetchrow("select state, attempts from qa_jobs where id = $1", job_id)
    assert "revoked" in worker.fatal
    assert tuple(job) == ("queued", 0)


async def test_token_commands_print_the_token_once_and_revoke_it(db_url, tmp_path):
    env = os.environ | {"TELESALES_DATABASE_URL": db_url, "TELESALES_DATA_DIR": str(tmp_path)}

    async def telesales(*args):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "telesales", "qa", "token", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode()

    code, out = await telesales("create", "qa-box-2")
    assert code == 0, out
    token = out.split("token: ", 1)[1].split()[0]
    assert token.startswith("tsw_")
    code, out = await telesales("list")
    assert code == 0 and "qa-box-2\tlive" in out and token not in out
    assert (await telesales("create", "qa-box-2"))[0] == 1  # names are unique
    assert (await telesales("revoke", "qa-box-2"))[0] == 0
    code, out = await telesales("list")
    assert "qa-box-2\trevoked" in out
