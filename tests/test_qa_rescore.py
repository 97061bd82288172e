"""`telesales qa rescore`: a changed scorecard is applied to stored transcripts and metrics, no model loaded."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys

from crm import calls, qa_jobs
from telesales.settings import CONFIG_DIR

TRANSCRIPT = [
    {"speaker": "agent", "start": 0.5, "end": 3.0, "text": "Good morning, this is Anna calling from Sunrise Tea."},
    {"speaker": "agent", "start": 3.2, "end": 5.0, "text": "This call is recorded for quality."},
    {"speaker": "customer", "start": 5.5, "end": 6.5, "text": "Hello, yes?"},
    {"speaker": "agent", "start": 7.0, "end": 9.0, "text": "What are you looking for in a tea supplier?"},
    {"speaker": "agent", "start": 18.0, "end": 20.0, "text": "Thank you for your time, have a nice day."},
]
METRICS = {
    "agent_talk_s": 9.3, "customer_talk_s": 1.0, "agent_talk_ratio": 0.6, "longest_silence_s": 9.0,
    "total_silence_s": 9.2, "overtalk_s": 0.0, "interruptions_by_agent": 0, "interruptions_by_customer": 0,
    "agent_response_latency_s": 0.5, "customer_response_latency_s": 0.5, "agent_words_per_minute": 150.0,
    "customer_words_per_minute": 120.0,
}


async def _stored_result(conn) -> str:
    call_id = (await calls.create_call(conn, direction="outbound", agent_id=None))["id"]
    await qa_jobs.insert_result(conn, call_id, "ab" * 32, "sales", {
        "scorecard_version": "before-edit", "model": "whisper-base (bundled)", "duration_s": 21.0,
        "transcript": TRANSCRIPT, "metrics": METRICS, "checks": [], "categories": {}, "score": 10.0,
        "timings": {"analyse_s": 4.2}, "speech_start_s": 0.5, "speech_end_s": 20.0,
    })
    return str(call_id)


async def _rescore(db_url, tmp_path, *args):
    env = os.environ | {
        "TELESALES_DATABASE_URL": db_url,
        "TELESALES_DATA_DIR": str(tmp_path / "var"),
        "TELESALES_CONFIG_DIR": str(tmp_path / "config"),
        "TELESALES_QA_MODEL": str(tmp_path / "no-model-here"),  # loading a model would fail
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telesales", "qa", "rescore", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def _check(result, check_id):
    return next(c for c in result["checks"] if c["id"] == check_id)


async def test_a_changed_check_changes_the_score_without_a_model(conn, db_url, tmp_path):
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    call_id = await _stored_result(conn)

    code, out, err = await _rescore(db_url, tmp_path, "--call", call_id, "--json")
    assert code == 0, err
    [first] = json.loads(out)
    assert (first["old_version"], first["old_score"], first["stored"]) == ("before-edit", 10.0, True)
    results = await qa_jobs.results_for_call(conn, call_id)
    assert len(results) == 2 and results[1]["scorecard_version"] == first["new_version"]
    assert _check(results[1], "greeting")["passed"] is True
    assert results[1]["transcript"] == TRANSCRIPT and results[1]["timings"]["rescored_from"] == "before-edit"

    card = tmp_path / "config/scorecards/sales.toml"
    text = card.read_text()
    greeting = 'phrases = ["hello", "hi there", "good morning"'
    card.write_text(text.replace(greeting, 'phrases = ["top of the morning"', 1))
    code, out, err = await _rescore(db_url, tmp_path, "--scorecard", "sales", "--since", "2000-01-01")
    assert code == 0, err
    assert "1 result(s) re-scored, 0 already current" in out
    results = await qa_jobs.results_for_call(conn, call_id)
    assert len(results) == 3
    assert _check(results[2], "greeting")["passed"] is False
    assert float(results[2]["score"]) < float(results[1]["score"])

    code, out, _ = await _rescore(db_url, tmp_path, "--call", call_id)  # nothing changed since: nothing stored
    assert code == 0 and "0 result(s) re-scored, 1 already current" in out
    assert len(await qa_jobs.results_for_call(conn, call_id)) == 3


async def test_rescore_filters_by_the_date_of_the_call(conn, db_url, tmp_path):
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    await _stored_result(conn)
    code, out, _ = await _rescore(db_url, tmp_path, "--scorecard", "sales", "--since", "2999-01-01")
    assert code == 0 and "0 result(s) re-scored, 0 already current" in out


async def test_rescore_without_a_selection_or_with_bad_values_says_so(db_url, tmp_path):
    shutil.copytree(CONFIG_DIR, tmp_path / "config")
    code, _, err = await _rescore(db_url, tmp_path)
    assert code == 2 and "--call ID or --scorecard NAME" in err
    code, _, err = await _rescore(db_url, tmp_path, "--scorecard", "sales", "--since", "last week")
    assert code == 1 and "--since must be a date" in err
    code, _, err = await _rescore(db_url, tmp_path, "--scorecard", "nonesuch")
    assert code == 1 and "no scorecard 'nonesuch'" in err
    code, _, err = await _rescore(db_url, tmp_path, "--call", "8c4f9a4e-0000-4000-8000-000000000000")
    assert code == 1 and "has no QA result" in err


async def test_admins_rescore_through_the_api(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        call_id = await _stored_result(c)
    admin = await login(client, "admin")
    headers = {"X-CSRF-Token": admin["csrf_token"]}
    resp = await client.post("/api/v1/qa/rescore", json={"scorecard": "sales", "since": "2000-01-01T00:00:00+08:00"},
                             headers=headers)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["rescored"], body["current"]) == (1, 0)
    [item] = body["items"]
    assert (item["call_id"], item["old_score"]) == (call_id, 10.0) and item["new_score"] > 10.0
    body = await (await client.post("/api/v1/qa/rescore", json={"call_id": call_id}, headers=headers)).json()
    assert (body["rescored"], body["current"]) == (0, 1)
    async with app_ctx.pool.acquire() as c:
        assert len(await qa_jobs.results_for_call(c, call_id)) == 2
        assert await c.fetchval("select count(*) from audit_log where action = 'qa.rescore'") == 2

    resp = await client.post("/api/v1/qa/rescore", json={}, headers=headers)
    assert resp.status == 422 and (await resp.json())["error"] == "missing_fields"
    resp = await client.post("/api/v1/qa/rescore", json={"scorecard": "nonesuch"}, headers=headers)
    assert resp.status == 422 and "no scorecard 'nonesuch'" in (await resp.json())["message"]
    resp = await client.post("/api/v1/qa/rescore", json={"scorecard": "sales", "since": "yesterday"}, headers=headers)
    assert resp.status == 422 and (await resp.json())["fields"] == ["since"]
