"""The inbound queue's parts without SIP: settings, caller numbers, the hold music, the snapshot the
wallboard reads, and inbound precedence over the progressive dialer (real database)."""

from __future__ import annotations

import datetime as dt
import wave

import factories as make
import numpy as np
import pytest

from crm import agent_status
from telesales.inbound import DEFAULT_QUEUE, InboundQueue, Waiting, inbound_config, sip_user
from telesales.inbound_audio import RATE, music_samples
from telesales.progressive import ProgressiveDialer
from telesales.settings import SettingsError, load_settings

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}


def _settings(tmp_path, **env):
    return load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path), **env})


def test_lines_map_numbers_to_skills(tmp_path):
    cfg = inbound_config(_settings(tmp_path, TELESALES_INBOUND_LINES="service=support, +862150001000="))
    assert cfg.lines == {"service": "support", "+862150001000": None}


@pytest.mark.parametrize(("env", "key"), [
    ({"TELESALES_INBOUND_LINES": "service"}, "inbound.lines"),
    ({"TELESALES_INBOUND_CALLBACK_AFTER_SECONDS": "-1"}, "inbound.callback_after_seconds"),
    ({"TELESALES_INBOUND_ANNOUNCE_EVERY_SECONDS": "0.5"}, "inbound.announce_every_seconds"),
    ({"TELESALES_INBOUND_ROUTE_INTERVAL_SECONDS": "0"}, "inbound.route_interval_seconds"),
])
def test_a_bad_setting_names_its_key(tmp_path, env, key):
    with pytest.raises(SettingsError, match=key):
        inbound_config(_settings(tmp_path, **env))


def test_hold_music_of_the_wrong_format_is_refused_at_start(tmp_path):
    path = tmp_path / "music.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\0" * 400)
    with pytest.raises(SettingsError, match="inbound.hold_music: .* 16 kHz mono"):
        inbound_config(_settings(tmp_path, TELESALES_INBOUND_HOLD_MUSIC=str(path)))
    with pytest.raises(SettingsError, match="inbound.hold_music: cannot read"):
        inbound_config(_settings(tmp_path, TELESALES_INBOUND_HOLD_MUSIC=str(tmp_path / "none.wav")))


@pytest.mark.parametrize(("uri", "user"), [
    ('"Bob" <sip:+8613800000001@10.0.0.1:5060>;tag=x', "+8613800000001"),
    ("sip:service@127.0.0.1:5070", "service"),
    ("<sip:02150001000@carrier.example;user=phone>", "02150001000"),
    ("sip:127.0.0.1", ""),
    ("", ""),
])
def test_the_user_part_of_a_sip_uri(uri, user):
    assert sip_user(uri) == user


def test_hold_music_is_loud_tonal_and_of_the_asked_length():
    x = music_samples(6.0).astype(np.float64)
    assert len(x) == 6 * RATE
    rms = [np.sqrt(np.mean(x[i:i + RATE // 2] ** 2)) for i in range(0, len(x), RATE // 2)]
    assert min(rms) > 1000 and np.max(np.abs(x)) < 32767 * 0.25  # never silent, never clipping
    spectrum = np.abs(np.fft.rfft(x[:RATE]))
    peak_hz = int(np.argmax(spectrum))  # a 1 s window: bin k is k Hz
    assert 80 < peak_hz < 1100  # notes, not noise or a high whine


def _queue(tmp_path, pool, lines="service=support") -> InboundQueue:
    return InboundQueue(inbound_config(_settings(tmp_path, TELESALES_INBOUND_LINES=lines)), pool, seats=None)


def test_snapshot_counts_waiting_callers_per_queue(tmp_path):
    q = _queue(tmp_path, pool=None)
    assert q.snapshot() == {"service": {"waiting": 0, "longest_wait_seconds": 0.0},
                            DEFAULT_QUEUE: {"waiting": 0, "longest_wait_seconds": 0.0}}
    q.waiting += [Waiting("a", "seat1", "service", "support", "+8613800000001", None, since=0.0),
                  Waiting("b", "seat1", "service", "support", "+8613800000002", None)]
    snap = q.snapshot()
    assert snap["service"]["waiting"] == 2 and snap["service"]["longest_wait_seconds"] > 0
    assert snap[DEFAULT_QUEUE]["waiting"] == 0


async def test_a_waiting_caller_takes_precedence_over_progressive_dials(app_ctx, tmp_path):
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, dialing_mode="progressive", **ALL_DAY)
        await make.lead(c, campaign_id)
        await make.lead(c, campaign_id)
        support = await make.user(c)
        await c.execute("update users set skills = '{support}' where id = $1", support)
        sales = await make.user(c)
        for agent in (support, sales):
            await agent_status.set_status(c, agent, "ready", campaign_id=campaign_id, now=dt.datetime.now(dt.UTC))
    app_ctx.inbound = _queue(tmp_path, app_ctx.pool)
    app_ctx.inbound.waiting.append(Waiting("a", "seat1", "service", "support", "+8613800000001", None))
    dialer = ProgressiveDialer(app_ctx, interval=1.0)

    placed = await dialer.tick(dt.datetime.now(dt.UTC))
    # The blended agent with the skill is kept for the caller; the one without it is dialled for.
    assert [p["lead_id"] is not None for p in placed] == [True]
    async with app_ctx.pool.acquire() as c:
        assert (await agent_status.current(c, support))["status"] == "ready"
        assert (await agent_status.current(c, sales))["status"] == "on_call"

    app_ctx.inbound.waiting.clear()  # the caller is gone: the agent is the dialler's again
    assert len(await dialer.tick(dt.datetime.now(dt.UTC))) == 1


async def _ready_agent_and_inbound_call(c) -> tuple[int, str]:
    campaign_id = await make.campaign(c, **ALL_DAY)
    agent = await make.user(c)
    await agent_status.set_status(c, agent, "ready", campaign_id=campaign_id, now=dt.datetime.now(dt.UTC))
    return agent, await make.call(c, direction="inbound", from_number="+8613800000009")


async def test_taking_a_caller_puts_the_call_on_a_new_customer_with_the_callers_number(app_ctx, tmp_path):
    q = _queue(tmp_path, app_ctx.pool)
    async with app_ctx.pool.acquire() as c:
        agent, call_id = await _ready_agent_and_inbound_call(c)
        w = Waiting(call_id, "seat1", "service", "support", "+8613800000009", None)
        assert await q._claim(c, w, agent)
        row = await c.fetchrow("select agent_id, customer_id, queue_outcome from calls where id = $1::uuid", call_id)
        assert (row["agent_id"], row["customer_id"], row["queue_outcome"]) == (agent, w.customer_id, "answered")
        phones = await c.fetchval("select array_agg(e164) from customer_phones where customer_id = $1",
                                  w.customer_id)
        assert phones == ["+8613800000009"]


async def test_a_caller_gone_before_an_agent_takes_them_leaves_no_empty_customer_behind(app_ctx, tmp_path):
    q = _queue(tmp_path, app_ctx.pool)
    async with app_ctx.pool.acquire() as c:
        agent, call_id = await _ready_agent_and_inbound_call(c)
        await c.execute("update calls set ended_at = now() where id = $1::uuid", call_id)  # hung up meanwhile
        customers = await make.count(c, "customers")
        w = Waiting(call_id, "seat1", "service", "support", "+8613800000009", None)
        assert not await q._claim(c, w, agent)
        assert await make.count(c, "customers") == customers and w.customer_id is None
        assert (await agent_status.current(c, agent))["status"] == "ready"
