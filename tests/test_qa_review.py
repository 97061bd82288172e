"""The review API: recording playback with range requests and audit, access, reviewer overrides and rescoring."""

from __future__ import annotations

import wave

import numpy as np
from factories import user
from scored_calls import scored_call
from test_transcript_search import CHINESE, ENGLISH


def write_recording(data_dir, name: str, seconds: float = 14.0):
    """A stereo 16 kHz WAV (left agent, right customer) of tones under data_dir/recordings; returns (path, bytes)."""
    folder = data_dir / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    left = (3000 * np.sin(2 * np.pi * 220 * t)).astype("<i2")
    right = (3000 * np.sin(2 * np.pi * 330 * t)).astype("<i2")
    path = folder / name
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.column_stack([left, right]).tobytes())
    return path, path.read_bytes()


async def _call_of(app_ctx, agent_id, lines=ENGLISH, name="rec.wav"):
    _, data = write_recording(app_ctx.settings.data_dir, name)
    async with app_ctx.pool.acquire() as c:
        call_id = await scored_call(c, lines, agent_id=agent_id, recording_path=f"recordings/{name}")
    return call_id, data


async def _plays(app_ctx, call_id) -> int:
    async with app_ctx.pool.acquire() as c:
        return await c.fetchval(
            "select count(*) from audit_log where action = 'play_recording' and entity_id = $1", call_id
        )


async def test_recording_is_served_in_ranges_to_its_agent_and_each_playback_is_audited(client, login, app_ctx):
    me = await login(client, "agent")
    call_id, data = await _call_of(app_ctx, me["id"])
    resp = await client.get(f"/api/v1/calls/{call_id}/recording", headers={"Range": "bytes=44-1043"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 44-1043/{len(data)}"
    assert await resp.read() == data[44:1044]
    whole = await client.get(f"/api/v1/calls/{call_id}/recording")
    assert whole.status == 200 and await whole.read() == data
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert await _plays(app_ctx, call_id) == 2


async def test_another_agents_recording_is_refused_and_not_audited_as_played(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        owner = await user(c, "agent")
    call_id, _ = await _call_of(app_ctx, owner)
    await login(client, "agent")
    resp = await client.get(f"/api/v1/calls/{call_id}/recording")
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    assert (await client.get(f"/api/v1/calls/{call_id}/review")).status == 403
    assert await _plays(app_ctx, call_id) == 0


async def test_path_traversal_in_the_recording_id_is_a_404(client, login, app_ctx):
    await login(client, "admin")
    (app_ctx.settings.data_dir / "secret.txt").parent.mkdir(parents=True, exist_ok=True)
    (app_ctx.settings.data_dir / "secret.txt").write_text("secret")
    for bad in ("..%2F..%2Fsecret.txt", "..%2Fsecret.txt", "%2E%2E", "not-a-uuid"):
        resp = await client.get(f"/api/v1/calls/{bad}/recording")
        assert resp.status == 404, bad
        assert b"secret" not in await resp.read()


async def test_a_recording_path_outside_the_recordings_folder_is_never_served(client, login, app_ctx):
    admin = await login(client, "admin")
    (app_ctx.settings.data_dir).mkdir(parents=True, exist_ok=True)
    (app_ctx.settings.data_dir / "secret.txt").write_text("secret")
    async with app_ctx.pool.acquire() as c:
        call_id = await scored_call(c, ENGLISH, agent_id=admin["id"],
                                    recording_path="recordings/../secret.txt")
    resp = await client.get(f"/api/v1/calls/{call_id}/recording")
    assert resp.status == 404


async def test_override_recomputes_the_score_and_keeps_the_automatic_result(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        agent = await user(c, "agent")
    call_id, _ = await _call_of(app_ctx, agent)
    reviewer = await login(client, "qa")
    before = await (await client.get(f"/api/v1/calls/{call_id}/review")).json()
    automatic = before["result"]["score"]
    failed = next(c for c in before["result"]["checks"] if c["passed"] is False)
    resp = await client.post(
        f"/api/v1/calls/{call_id}/overrides",
        json={"check_id": failed["id"], "passed": True, "comment": "said in other words at 0:04"},
        headers={"X-CSRF-Token": reviewer["csrf_token"]},
    )
    assert resp.status == 201, await resp.text()
    after = await (await client.get(f"/api/v1/calls/{call_id}/review")).json()
    assert float(after["result"]["reviewed_score"]) > float(automatic)
    assert after["result"]["score"] == automatic  # the automatic result is kept
    assert next(c for c in after["result"]["checks"] if c["id"] == failed["id"])["passed"] is False
    assert next(c for c in after["result"]["reviewed_checks"] if c["id"] == failed["id"])["passed"] is True
    [o] = after["overrides"]
    assert o["comment"] == "said in other words at 0:04" and o["automatic_passed"] is False
    # search ranks and filters by the reviewed score
    resp = await client.get("/api/v1/qa/search", params={"q": "cancel", "mode": "keyword",
                                                         "score_min": after["result"]["reviewed_score"]})
    assert (await resp.json())["total"] == 1


async def test_override_needs_a_comment_a_known_check_and_a_reviewer(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        agent = await user(c, "agent")
    call_id, _ = await _call_of(app_ctx, agent, CHINESE)
    reviewer = await login(client, "qa")
    headers = {"X-CSRF-Token": reviewer["csrf_token"]}
    url = f"/api/v1/calls/{call_id}/overrides"
    cases = [
        ({"check_id": "greeting", "passed": True}, 422),
        ({"check_id": "greeting", "passed": True, "comment": "  "}, 422),
        ({"check_id": "no_such_check", "passed": True, "comment": "x"}, 422),
        ({"check_id": "greeting", "passed": "yes", "comment": "x"}, 422),
    ]
    for body, status in cases:
        resp = await client.post(url, json=body, headers=headers)
        assert resp.status == status, (body, await resp.text())
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select count(*) from reviewer_overrides") == 0
        assert await c.fetchval("select count(*) from qa_reviews") == 0


async def test_an_agent_sees_the_review_of_their_own_call(client, login, app_ctx):
    agent = await login(client, "agent")
    agent_id = agent["id"]
    call_id, _ = await _call_of(app_ctx, agent_id)
    async with app_ctx.pool.acquire() as c:
        reviewer = await user(c, "qa")
        await c.execute(
            """insert into reviewer_overrides (result_id, call_id, check_id, automatic_passed, passed, comment,
                   reviewer_id) select id, call_id, 'greeting', true, false, 'too fast', $2 from qa_results
                   where call_id = $1::uuid""",
            call_id, reviewer,
        )
    body = await (await client.get(f"/api/v1/calls/{call_id}/review")).json()
    assert [o["comment"] for o in body["overrides"]] == ["too fast"]
    assert [s["text"] for s in body["segments"]] == [line[3] for line in ENGLISH]
    resp = await client.post(
        f"/api/v1/calls/{call_id}/overrides",
        json={"check_id": "greeting", "passed": True, "comment": "mine"},
        headers={"X-CSRF-Token": agent["csrf_token"]},
    )
    assert resp.status == 403
