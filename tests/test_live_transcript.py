"""Live transcript end to end: a real seat calls telephony/sim, a live QA worker taps the call through the
service's audio WebSocket, transcribes with the bundled Whisper, and the supervisor's WebSocket shows the
words with the right speaker; alerts are stored and notified on live_events.

The worker is the real qa.live_worker code running in this test's event loop (transcription on its
thread), connecting to the real app over HTTP with a worker token it made itself, as a worker process does.
"""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp
import pytest
from live_helpers import inject_paced, listening, live_worker, messages
from sip_helpers import DEADLINE, free_udp_port, read_wav, speech_wav, wait_until

from crm import db, worker_tokens
from telephony.config import SeatConfig
from telephony.manager import SeatManager
from telesales.seats import SeatService
from telesales.settings import load_settings

pytestmark = pytest.mark.timeout(600)

ENV = {"TELESALES_LIVE_LANGUAGE": "en", "TELESALES_LIVE_MAX_SILENCE_SECONDS": "4"}


@pytest.fixture(scope="module")
def model(whisper_base):
    return whisper_base


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voices")
    said = speech_wav(folder, "I want to cancel my order today.", "cancel-said")
    # Pauses around it, played twice: the customer says it once more after the worker surely tapped the
    # call, and then no more (a call that talks on keeps a loaded machine's worker busy long after).
    cancel = folder / "cancel.wav"
    subprocess.run(["sox", str(said), str(cancel), "pad", "5", "2"], check=True, timeout=60)
    return {
        "cancel": cancel,
        "agent": speech_wav(folder, "Thank you for calling, how can I help you?", "agent"),
    }


@pytest.fixture
async def app_ctx(db_url, tmp_path, catalog):
    """The app's context with one real seat whose call events write the call rows."""
    from telesales.app import AppContext

    settings = load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path / "var"), **ENV})
    pool = await db.create_pool(db_url, 1, 6)
    cfg = SeatConfig(name="seat1", sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"))
    seats = SeatService(SeatManager([cfg]), pool, tmp_path)
    await seats.start()
    yield AppContext(settings=settings, pool=pool, catalog=catalog, seats=seats)
    await seats.stop()
    await pool.close()


@pytest.fixture
async def worker(db_url, app_ctx, client, model):
    # Lag is the bench's business (bench/live_transcript_lag.py); here every utterance is transcribed however
    # loaded the machine is, so the words can be checked.
    url = str(client.make_url("")).rstrip("/")
    async with live_worker(db_url, app_ctx.settings, model, url, max_lag_s=600.0) as w:
        yield w


def _origin(client) -> dict:
    return {"Origin": str(client.make_url("")).rstrip("/")}


async def test_the_supervisor_sees_both_parties_words_live_and_a_cancel_raises_an_alert(
        client, login, app_ctx, db_url, worker, peers, voices):
    await login(client, "supervisor")
    sim = await peers("--answer-after", "0", "--play", str(voices["cancel"]), "--play", str(voices["cancel"]))
    async with listening(db_url) as notified:
        call_id = await app_ctx.seats.dial("seat1", sim.uri)
        ws = await client.ws_connect(f"/api/v1/live/calls/{call_id}/transcript", headers=_origin(client))
        await wait_until(lambda: worker.calls, what="the worker to take the call")
        # The agent speaks too (into the call through a second tap, as a headset would).
        tap = await app_ctx.seats.manager.seat("seat1").open_tap(call_id)
        agent_words = read_wav(voices["agent"])[0]
        await asyncio.sleep(1.0)
        await inject_paced(tap, agent_words)

        def done(got):
            said = [(e["speaker"], e["text"].lower()) for e in got if e["type"] == "transcript"]
            return (any(s == "customer" and "cancel" in t for s, t in said)
                    and any(s == "agent" and "help" in t for s, t in said)
                    and any(e["type"] == "alert" and e["name"] == "cancel" for e in got))

        got = await messages(ws, done, timeout=300)
        await tap.aclose()
        lines = [e for e in got if e["type"] == "transcript"]
        assert all(e["call_id"] == str(call_id) for e in got)
        customer = [e for e in lines if e["speaker"] == "customer"]
        agent = [e for e in lines if e["speaker"] == "agent"]
        assert any("order" in e["text"].lower() for e in customer), customer
        assert not any("cancel" in e["text"].lower() for e in agent), "the customer's words stay the customer's"
        assert not any("help" in e["text"].lower() for e in customer), "the agent's words stay the agent's"
        alert = next(e for e in got if e["type"] == "alert" and e["kind"] == "phrase")
        assert (alert["speaker"], alert["name"]) == ("customer", "cancel")

        # The wallboard's channel carried the same alert and the segments.
        await wait_until(lambda: any(e["type"] == "alert" and e["name"] == "cancel" for e in notified),
                         what="the alert on live_events")
        note = next(e for e in notified if e["type"] == "alert" and e["kind"] == "phrase")
        assert set(note) >= {"type", "call_id", "kind", "speaker", "text", "name", "at"}
        assert note["call_id"] == str(call_id)
        assert any(e["type"] == "transcript" and e["speaker"] == "agent" for e in notified)

        # A supervisor who opens the page later gets the backlog first.
        late = await client.ws_connect(f"/api/v1/live/calls/{call_id}/transcript", headers=_origin(client))
        backlog = lambda g: [e["id"] for e in g if e["type"] == "transcript"]  # noqa: E731
        cancel_alert = lambda g: any(e["type"] == "alert" and e["name"] == "cancel" for e in g)  # noqa: E731
        again = await messages(late, lambda g: len(backlog(g)) >= len(lines) and cancel_alert(g), timeout=DEADLINE)
        assert backlog(again)[:len(lines)] == [e["id"] for e in lines]
        await late.close()
        await ws.close()

        await app_ctx.seats.manager.seat("seat1").hangup(str(call_id))
    async with app_ctx.pool.acquire() as c:
        # The worker lets the call go once the utterances it had queued are transcribed (slow on a loaded machine).
        await wait_until(lambda: not worker.calls, timeout=180, what="the worker to let the call go")
        row = await c.fetchrow("select outcome, finished_at from live_calls where call_id = $1", call_id)
    assert row["outcome"] == "ended" and row["finished_at"] is not None


async def test_silence_longer_than_the_bound_raises_a_metric_alert(client, login, app_ctx, db_url, worker, peers):
    await login(client, "supervisor")
    sim = await peers("--answer-after", "0")  # answers and says nothing
    async with listening(db_url) as notified:
        call_id = await app_ctx.seats.dial("seat1", sim.uri)
        ws = await client.ws_connect(f"/api/v1/live/calls/{call_id}/transcript", headers=_origin(client))
        got = await messages(ws, lambda g: any(e["type"] == "alert" for e in g), timeout=30)
        alert = next(e for e in got if e["type"] == "alert")
        assert (alert["kind"], alert["name"], alert["speaker"]) == ("metric", "long_silence", None)
        assert "bound 4 s" in alert["text"]
        await wait_until(lambda: any(e["type"] == "alert" for e in notified), what="the alert on live_events")
        await ws.close()
        await app_ctx.seats.manager.seat("seat1").hangup(str(call_id))


async def test_the_transcript_socket_refuses_all_but_supervisors_and_admins(client, login, app_ctx):
    async with app_ctx.pool.acquire() as c:
        call_id = await c.fetchval("insert into calls (direction, seat) values ('outbound', 'seat1') returning id")
        _, token = await worker_tokens.create_token(c, "w1")
    path = f"/api/v1/live/calls/{call_id}/transcript"

    async def status(headers):
        try:
            ws = await client.ws_connect(path, headers=headers)
        except aiohttp.WSServerHandshakeError as e:
            return e.status
        await ws.close()
        return 101

    assert await status(_origin(client)) == 401  # anonymous
    assert await status({"Authorization": f"Bearer {token}", **_origin(client)}) == 401  # a worker token
    for role in ("agent", "qa"):
        client.session.cookie_jar.clear()
        await login(client, role)
        assert await status(_origin(client)) == 403, role
    client.session.cookie_jar.clear()
    await login(client, "supervisor")
    assert await status({"Origin": "http://evil.example"}) == 403
    assert await status(_origin(client)) == 101
    # The audio socket: a worker token, and only for a call live on a seat.
    audio = f"/api/v1/qa/live/{call_id}/audio"
    resp = await client.get(audio, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 409 and (await resp.json())["error"] == "call_not_live"
    resp = await client.get(audio, headers={"Authorization": "Bearer tsw_wrong"})
    assert resp.status == 401
