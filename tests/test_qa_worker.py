"""The QA job queue (crm/qa_jobs.py) against the real database, and the worker (qa/worker.py) end to end."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
from synth_calls import CALLS, SynthCall, rendered

from crm import calls, db, qa_jobs

POLICY = qa_jobs.QueuePolicy(lease_s=60, max_attempts=3, backoff_s=0.0, backoff_max_s=0.0)


async def _call(conn) -> str:
    row = await calls.create_call(conn, direction="outbound", agent_id=None)
    return str(row["id"])


async def test_enqueue_twice_keeps_one_job(conn):
    call_id = await _call(conn)
    first = await qa_jobs.enqueue(conn, call_id, "recordings/a.wav", "sales")
    second = await qa_jobs.enqueue(conn, call_id, "recordings/a.wav", "sales")
    assert first == second
    assert await conn.fetchval("select count(*) from qa_jobs") == 1


async def test_a_job_is_claimed_by_one_of_two_workers_at_once(conn, db_url):
    await qa_jobs.enqueue(conn, await _call(conn), "recordings/a.wav", "sales")
    other = await db.connect(db_url)
    try:
        # Hold the first claim's transaction open while the second worker looks: SKIP LOCKED must skip the row.
        tx = conn.transaction()
        await tx.start()
        mine = await qa_jobs.claim(conn, "w1", POLICY)
        theirs = await qa_jobs.claim(other, "w2", POLICY)
        await tx.commit()
        after = await qa_jobs.claim(other, "w2", POLICY)
    finally:
        await other.close()
    assert mine is not None and mine["worker_id"] == "w1" and mine["attempts"] == 1
    assert theirs is None
    assert after is None  # still leased to w1


async def test_concurrent_claims_take_each_job_once(conn, db_url):
    for _ in range(6):
        await qa_jobs.enqueue(conn, await _call(conn), "recordings/a.wav", "sales")
    workers = [await db.connect(db_url) for _ in range(3)]
    try:

        async def drain(c, name):
            got = []
            while (job := await qa_jobs.claim(c, name, POLICY)) is not None:
                got.append(job["id"])
            return got

        taken = await asyncio.gather(*(drain(c, f"w{i}") for i, c in enumerate(workers)))
    finally:
        for c in workers:
            await c.close()
    ids = [i for got in taken for i in got]
    assert len(ids) == 6 and len(set(ids)) == 6


async def test_a_lapsed_lease_makes_the_job_claimable_again(conn):
    await qa_jobs.enqueue(conn, await _call(conn), "recordings/a.wav", "sales")
    short = qa_jobs.QueuePolicy(lease_s=0.05, max_attempts=3, backoff_s=0, backoff_max_s=0)
    first = await qa_jobs.claim(conn, "dead", short)
    await asyncio.sleep(0.1)
    second = await qa_jobs.claim(conn, "alive", POLICY)
    assert second["id"] == first["id"]
    assert second["worker_id"] == "alive" and second["attempts"] == 2
    assert not await qa_jobs.renew(conn, first["id"], "dead", POLICY)
    assert await qa_jobs.renew(conn, first["id"], "alive", POLICY)


async def test_a_failed_job_waits_out_its_backoff_then_parks_after_max_attempts(conn):
    job_id = await qa_jobs.enqueue(conn, await _call(conn), "recordings/a.wav", "sales")
    policy = qa_jobs.QueuePolicy(lease_s=60, max_attempts=2, backoff_s=30, backoff_max_s=600)
    job = await qa_jobs.claim(conn, "w", policy)
    assert await qa_jobs.fail(conn, job_id, "w", "boom 1", policy) == "queued"
    delay = await conn.fetchval("select extract(epoch from run_after - now()) from qa_jobs where id = $1", job_id)
    assert 25 < delay <= 30
    assert await qa_jobs.claim(conn, "w", policy) is None  # not due yet
    await conn.execute("update qa_jobs set run_after = now() where id = $1", job_id)
    job = await qa_jobs.claim(conn, "w", policy)
    assert job["attempts"] == 2
    assert await qa_jobs.fail(conn, job_id, "w", "boom 2", policy) == "parked"
    parked = await qa_jobs.parked_jobs(conn)
    assert [(p["id"], p["last_error"]) for p in parked] == [(job_id, "boom 2")]
    assert await qa_jobs.claim(conn, "w", policy) is None


async def test_a_permanent_failure_parks_at_once(conn):
    job_id = await qa_jobs.enqueue(conn, await _call(conn), "recordings/a.wav", "sales")
    await qa_jobs.claim(conn, "w", POLICY)
    assert await qa_jobs.fail(conn, job_id, "w", "not a WAV", POLICY, permanent=True) == "parked"


async def test_a_job_that_keeps_killing_its_worker_is_parked(conn):
    job_id = await qa_jobs.enqueue(conn, await _call(conn), "recordings/a.wav", "sales")
    short = qa_jobs.QueuePolicy(lease_s=0.01, max_attempts=2, backoff_s=0, backoff_max_s=0)
    assert (await qa_jobs.claim(conn, "w1", short))["attempts"] == 1
    await asyncio.sleep(0.05)
    assert (await qa_jobs.claim(conn, "w2", short))["attempts"] == 2
    await asyncio.sleep(0.05)
    assert await qa_jobs.claim(conn, "w3", short) is None
    row = await conn.fetchrow("select state, last_error from qa_jobs where id = $1", job_id)
    assert row["state"] == "parked" and "lease expired" in row["last_error"]


def _result(score):
    return {
        "scorecard_version": "abc123",
        "model": "whisper-base",
        "duration_s": 12.5,
        "transcript": [{"speaker": "agent", "start": 1.0, "end": 2.0, "text": "Hello"}],
        "metrics": {"agent_talk_s": 1.0},
        "checks": [{"id": "greeting", "passed": True}],
        "categories": {"attitude": 100.0},
        "score": score,
        "timings": {"analyse_s": 1.0},
    }


async def test_storing_a_result_twice_keeps_one_row_and_marks_the_job_done(conn):
    call_id = await _call(conn)
    job_id = await qa_jobs.enqueue(conn, call_id, "recordings/a.wav", "sales")
    job = await qa_jobs.claim(conn, "w", POLICY)
    assert await qa_jobs.store_result(conn, job, _result(87.5))
    assert not await qa_jobs.store_result(conn, job, _result(50))
    rows = await qa_jobs.results_for_call(conn, call_id)
    assert len(rows) == 1 and float(rows[0]["score"]) == 87.5
    assert rows[0]["transcript"][0]["text"] == "Hello"
    assert await conn.fetchval("select state from qa_jobs where id = $1", job_id) == "done"


async def test_an_unscorable_call_stores_a_null_score(conn):
    call_id = await _call(conn)
    await qa_jobs.enqueue(conn, call_id, "recordings/a.wav", "sales")
    job = await qa_jobs.claim(conn, "w", POLICY)
    await qa_jobs.store_result(conn, job, _result(None))
    assert (await qa_jobs.results_for_call(conn, call_id))[0]["score"] is None


# --- the worker process ------------------------------------------------------

SYNTH_CACHE = Path(tempfile.gettempdir()) / "telesales-synth-calls"  # shared with test_qa_calls.py

# Three lines of the good sale: about 12 s of audio, a few seconds to transcribe.
SHORT = SynthCall("short", (CALLS[0].lines[0], CALLS[0].lines[1], CALLS[0].lines[-2]))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data folder for the module's workers, so the bundled model is joined into it once."""
    return tmp_path_factory.mktemp("qa-worker-data")


async def _recorded_call(conn, data_dir) -> tuple[str, int]:
    """A call whose recording is one synthetic WAV under data_dir, queued for the sales scorecard."""
    wav, _ = rendered(SHORT, SYNTH_CACHE)
    call_id = await _call(conn)
    relative = f"recordings/{call_id}.wav"
    (data_dir / "recordings").mkdir(exist_ok=True)
    shutil.copy(wav, data_dir / relative)
    sha = hashlib.sha256(wav.read_bytes()).hexdigest()
    await calls.set_recording(conn, call_id, state="complete", path=relative, sha256=sha)
    return call_id, await qa_jobs.enqueue(conn, call_id, relative, "sales", sha)


async def _worker(db_url, data_dir, *args: str, lease_s: float = 60):
    env = os.environ | {
        "TELESALES_DATABASE_URL": db_url,
        "TELESALES_DATA_DIR": str(data_dir),
        "TELESALES_QA_WORKER_LEASE_SECONDS": str(lease_s),
        "TELESALES_QA_WORKER_POLL_SECONDS": "0.2",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telesales", "qa", "worker", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )


async def _wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await condition():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(240)
async def test_worker_once_scores_a_queued_recording_and_stores_one_result(conn, db_url, data_dir):
    call_id, job_id = await _recorded_call(conn, data_dir)
    proc = await _worker(db_url, data_dir, "--once")
    out, _ = await asyncio.wait_for(proc.communicate(), 200)
    assert proc.returncode == 0, out.decode()
    results = await qa_jobs.results_for_call(conn, call_id)
    assert len(results) == 1, out.decode()
    result = results[0]
    assert result["score"] is not None and 0 <= float(result["score"]) <= 100
    assert result["scorecard"] == "sales" and result["scorecard_version"]
    assert {s["speaker"] for s in result["transcript"]} == {"agent", "customer"}
    assert any("good morning" in s["text"].lower() for s in result["transcript"])
    assert "greeting" in {c["id"] for c in result["checks"]}
    assert result["timings"]["analyse_s"] > 0
    assert await conn.fetchval("select state from qa_jobs where id = $1", job_id) == "done"


@pytest.mark.timeout(240)
async def test_a_worker_killed_mid_job_loses_nothing_and_duplicates_nothing(conn, db_url, data_dir):
    call_id, job_id = await _recorded_call(conn, data_dir)
    first = await _worker(db_url, data_dir, "--worker-id", "doomed", lease_s=3)

    async def running():
        return await conn.fetchval(
            "select true from qa_jobs where id = $1 and state = 'running' and worker_id = 'doomed'", job_id
        )

    try:
        await _wait_until(running, 120, "the first worker to claim the job")
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    assert await qa_jobs.results_for_call(conn, call_id) == []

    async def lapsed():
        return await conn.fetchval("select lease_until < now() from qa_jobs where id = $1", job_id)

    await _wait_until(lapsed, 10, "the killed worker's lease to lapse")
    second = await _worker(db_url, data_dir, "--once", "--worker-id", "heir")
    out, _ = await asyncio.wait_for(second.communicate(), 200)
    assert second.returncode == 0, out.decode()
    results = await qa_jobs.results_for_call(conn, call_id)
    assert len(results) == 1 and results[0]["score"] is not None
    job = await conn.fetchrow("select * from qa_jobs where id = $1", job_id)
    assert (job["state"], job["worker_id"], job["attempts"]) == ("done", "heir", 2)


@pytest.mark.timeout(240)
async def test_sigterm_mid_job_gives_the_job_back_at_once_and_exits_0(conn, db_url, data_dir):
    call_id, job_id = await _recorded_call(conn, data_dir)
    # A long lease: if the job were not given back, the next worker would find nothing to claim.
    first = await _worker(db_url, data_dir, "--worker-id", "leaving", lease_s=600)

    async def running():
        return await conn.fetchval(
            "select true from qa_jobs where id = $1 and state = 'running' and worker_id = 'leaving'", job_id
        )

    try:
        await _wait_until(running, 120, "the worker to claim the job")
    finally:
        first.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 0, out.decode()
    assert "(stopped)" in out.decode()
    job = await conn.fetchrow("select *, run_after <= now() as due from qa_jobs where id = $1", job_id)
    if job["state"] == "done":  # it finished before the signal landed: that is allowed too
        assert len(await qa_jobs.results_for_call(conn, call_id)) == 1
        return
    assert (job["state"], job["lease_until"], job["due"], job["attempts"]) == ("queued", None, True, 0)
    second = await _worker(db_url, data_dir, "--once", "--worker-id", "next")
    out, _ = await asyncio.wait_for(second.communicate(), 200)
    assert second.returncode == 0 and "1 job(s) attempted" in out.decode(), out.decode()
    assert len(await qa_jobs.results_for_call(conn, call_id)) == 1


async def test_release_gives_a_held_job_back_without_counting_the_attempt(conn):
    job_id = await qa_jobs.enqueue(conn, await _call(conn), "recordings/a.wav", "sales")
    await qa_jobs.claim(conn, "w1", POLICY)
    assert not await qa_jobs.release(conn, job_id, "someone-else")
    assert await qa_jobs.release(conn, job_id, "w1")
    job = await qa_jobs.claim(conn, "w2", POLICY)  # at once, though w1's lease had 60 s to run
    assert (job["id"], job["attempts"]) == (job_id, 1)


# --- failures, in process (they fail before the model is needed) -------------


async def test_a_recording_that_is_not_a_wav_is_parked_with_its_error(conn, settings):
    from qa.worker import Worker

    call_id = await _call(conn)
    (settings.data_dir / "recordings").mkdir(parents=True)
    (settings.data_dir / "recordings/bad.wav").write_bytes(b"this is not audio")
    job_id = await qa_jobs.enqueue(conn, call_id, "recordings/bad.wav", "sales")
    assert await Worker(conn, settings, None, "w").run(once=True) == 1
    job = await conn.fetchrow("select * from qa_jobs where id = $1", job_id)
    assert job["state"] == "parked" and job["attempts"] == 1 and job["last_error"]
    assert await qa_jobs.results_for_call(conn, call_id) == []


async def test_a_recording_changed_since_hang_up_is_parked(conn, settings):
    from qa.worker import Worker

    wav, _ = rendered(SHORT, SYNTH_CACHE)
    call_id = await _call(conn)
    (settings.data_dir / "recordings").mkdir(parents=True)
    shutil.copy(wav, settings.data_dir / "recordings/a.wav")
    job_id = await qa_jobs.enqueue(conn, call_id, "recordings/a.wav", "sales", "0" * 64)
    await Worker(conn, settings, None, "w").run(once=True)
    job = await conn.fetchrow("select * from qa_jobs where id = $1", job_id)
    assert job["state"] == "parked" and "checksum" in job["last_error"]


async def test_an_unexpected_error_is_retried_after_a_backoff(conn, settings):
    from qa.worker import Worker

    wav, _ = rendered(SHORT, SYNTH_CACHE)
    call_id = await _call(conn)
    (settings.data_dir / "recordings").mkdir(parents=True)
    shutil.copy(wav, settings.data_dir / "recordings/a.wav")
    job_id = await qa_jobs.enqueue(conn, call_id, "recordings/a.wav", "sales")
    # No model: transcription raises, as a crashing model or a full disk would.
    assert await Worker(conn, settings, None, "w").run(once=True) == 1
    job = await conn.fetchrow("select *, run_after > now() as waiting from qa_jobs where id = $1", job_id)
    assert (job["state"], job["attempts"], job["waiting"]) == ("queued", 1, True)
    assert job["last_error"]


def test_a_bad_worker_setting_is_named(settings):
    from qa.worker import queue_policy
    from telesales.settings import SettingsError

    assert queue_policy(settings.qa).max_attempts >= 1
    bad = type(settings.qa)(**vars(settings.qa) | {"worker_lease_seconds": 0.0})
    with pytest.raises(SettingsError, match="qa.worker_lease_seconds"):
        queue_policy(bad)
