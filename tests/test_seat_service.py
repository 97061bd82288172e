"""Call rows written from real seat events: the service side of telephony against the real store."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from sip_helpers import DEADLINE, free_udp_port, speech_wav, wait_until

from crm import calls as call_store
from crm import db
from telephony.config import SeatConfig
from telephony.manager import SeatManager
from telephony.recording import StereoWavWriter, sha256_file
from telesales.seats import SeatService, seat_configs
from telesales.settings import SettingsError, load_settings

SEAT = "seat1"


@pytest.fixture
async def pool(db_url):
    p = await db.create_pool(db_url, 1, 4)
    yield p
    await p.close()


@pytest.fixture
async def service(pool, tmp_path):
    cfg = SeatConfig(name=SEAT, sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"))
    svc = SeatService(SeatManager([cfg]), pool, tmp_path)
    await svc.start()
    yield svc
    await svc.stop()


async def _row(pool, call_id):
    async with pool.acquire() as conn:
        return await call_store.get_call(conn, call_id)


async def row_when(pool, call_id, condition, timeout: float = DEADLINE):
    """Poll the call row until condition(row) holds."""
    deadline = time.monotonic() + timeout
    while not condition(row := await _row(pool, call_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"call row never got there: {dict(row)}")
        await asyncio.sleep(0.05)
    return row


def ended_with_recording(*states: str):
    return lambda row: row["ended_at"] is not None and row["recording_state"] in states


async def test_answered_call_row_has_times_code_side_and_a_complete_recording(service, pool, peers, tmp_path):
    sim = await peers("--answer-after", "0.2", "--hangup-after", "1")
    call_id = await service.dial(SEAT, sim.uri, to_number="+8613800138000")

    row = await row_when(pool, call_id, ended_with_recording("complete"))
    assert (row["sip_code"], row["hangup_side"], row["hangup_cause"]) == (200, "customer", "normal_clearing")
    assert row["seat"] == SEAT and row["sip_call_id"]
    assert row["created_at"] <= row["ringing_at"] <= row["answered_at"] <= row["ended_at"]
    assert 0.5 <= float(row["duration_seconds"]) <= 3
    assert row["recording_path"] == f"recordings/{row['created_at']:%Y/%m/%d}/{call_id}.wav"
    assert row["recording_sha256"] == sha256_file(tmp_path / row["recording_path"])


async def test_busy_call_row_ends_with_486_and_no_recording(service, pool, peers):
    sim = await peers("--reject", "486")
    call_id = await service.dial(SEAT, sim.uri)

    row = await row_when(pool, call_id, ended_with_recording("none"))
    assert (row["sip_code"], row["hangup_side"], row["hangup_cause"]) == (486, "customer", "busy")
    assert row["answered_at"] is None and row["recording_state"] == "none"
    assert float(row["duration_seconds"]) == 0


@pytest.mark.parametrize(("sim_args", "hang_up", "expected"), [
    (("--reject", "603"), False, (603, "customer", "rejected")),
    ((), False, (487, "system", "no_answer")),
    (("--answer-after", "0"), True, (200, "agent", "normal_clearing")),
], ids=["declined", "no-answer", "agent-hangs-up"])
async def test_each_outcome_closes_the_row_with_its_code_side_and_cause(service, pool, peers, sim_args, hang_up,
                                                                       expected):
    sim = await peers(*sim_args)
    call_id = await service.dial(SEAT, sim.uri, ring_timeout=1.0)
    if hang_up:
        await row_when(pool, call_id, lambda r: r["recording_state"] == "recording")
        await service.manager.seat(SEAT).hangup(call_id)

    row = await row_when(pool, call_id, ended_with_recording("none", "complete"))
    assert (row["sip_code"], row["hangup_side"], row["hangup_cause"]) == expected
    assert row["recording_state"] == ("complete" if hang_up else "none")


async def test_a_refused_dial_closes_its_row_and_raises(service, pool):
    from telephony.client import CommandError

    with pytest.raises(CommandError, match="not a SIP URI"):
        await service.dial(SEAT, "mailto:someone@example.com")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("select * from calls")
    assert (row["hangup_side"], row["hangup_cause"]) == ("system", "dial_failed")


async def test_killed_seat_closes_its_call_as_seat_crashed_with_a_repaired_recording(service, pool, peers, tmp_path):
    voice = speech_wav(tmp_path, "Please hold the line.", "customer")
    sim = await peers("--answer-after", "0", "--play", str(voice), "--loop")
    call_id = await service.dial(SEAT, sim.uri)

    row = await row_when(pool, call_id, lambda r: r["recording_state"] == "recording")
    path = tmp_path / row["recording_path"]
    await wait_until(lambda: path.stat().st_size > 44 + 64_000, what="1 s of audio on disk")
    os.kill(service.manager.pid(SEAT), signal.SIGKILL)

    row = await row_when(pool, call_id, ended_with_recording("repaired"), timeout=5)
    assert (row["hangup_side"], row["hangup_cause"]) == ("system", "seat_crashed")
    assert row["recording_sha256"] == sha256_file(path)
    await wait_until(lambda: service.manager.restarts(SEAT) == 1, timeout=10, what="the restart")


async def test_service_start_repairs_recordings_left_open_by_a_crash(pool, tmp_path):
    path = tmp_path / "recordings" / "left-open.wav"
    writer = StereoWavWriter(path)
    writer.write(bytes(640), bytes(640))
    writer.flush()
    writer.abandon()
    with open(path, "ab") as f:
        f.write(bytes(1280))  # audio after the last header update
    async with pool.acquire() as conn:
        call = await call_store.create_call(conn, direction="outbound", agent_id=None)
        await call_store.set_recording(conn, call["id"], state="recording", path="recordings/left-open.wav")

    svc = SeatService(SeatManager([]), pool, tmp_path)
    await svc.start()
    await svc.stop()

    row = await _row(pool, call["id"])
    assert (row["recording_state"], row["hangup_cause"]) == ("repaired", "service_restart")
    assert row["recording_sha256"] == sha256_file(path)


def test_seat_configs_come_from_settings(tmp_path):
    settings = load_settings(environ={
        "TELESALES_DATA_DIR": str(tmp_path), "TELESALES_TELEPHONY_SEATS": "2",
        "TELESALES_TELEPHONY_SIP_BASE_PORT": "6000", "TELESALES_TELEPHONY_ALLOWED_PEERS": "10.0.0.5",
    })
    first, second = seat_configs(settings)
    assert (first.name, first.sip_port, second.name, second.sip_port) == ("seat1", 6000, "seat2", 6001)
    assert first.allowed_peers == ("10.0.0.5",)
    assert first.recordings_dir == str(tmp_path / "recordings")


def test_a_seat_can_have_its_own_account_transport_and_peers(tmp_path):
    config = tmp_path / "telesales.toml"
    config.write_text(
        '[telephony]\nseats = 2\nusername = "shared"\npassword = "s"\nrealm = "pbx"\nregistrar = "sip:10.0.0.1"\n'
        '[telephony.per_seat.seat2]\nusername = "1002"\npassword = "p2"\ntransport = "tcp"\n'
        'allowed_peers = ["10.0.0.9"]\ncodecs = ["G722"]\n'
    )
    first, second = seat_configs(load_settings(config, environ={"TELESALES_DATA_DIR": str(tmp_path)}))
    assert (first.account.username, first.transport, first.codecs) == ("shared", "udp", ("PCMA", "PCMU", "G722"))
    assert (second.account.username, second.account.password, second.transport) == ("1002", "p2", "tcp")
    assert (second.account.realm, second.account.registrar) == ("pbx", "sip:10.0.0.1")  # the shared values
    assert (second.allowed_peers, second.codecs) == (("10.0.0.9",), ("G722",))


@pytest.mark.parametrize("table, message", [
    ('[telephony.per_seat.seat7]\nusername = "x"\n', "telephony.per_seat.seat7: no such seat"),
    ('[telephony.per_seat.seat1]\nsip_base_port = 7000\n', "per_seat.seat1.sip_base_port: not a per-seat setting"),
    ('[telephony.per_seat.seat1]\ncodecs = 5\n', "per_seat.seat1.codecs .*expected a list"),
    ('[telephony.per_seat.seat1]\ntransport = "sctp"\n', "telephony.transport: must be one of"),
])
def test_a_bad_per_seat_value_is_a_settings_error_naming_it(tmp_path, table, message):
    config = tmp_path / "telesales.toml"
    config.write_text("[telephony]\nseats = 1\n" + table)
    with pytest.raises(SettingsError, match=message):
        seat_configs(load_settings(config, environ={"TELESALES_DATA_DIR": str(tmp_path)}))


def test_an_unknown_codec_is_a_settings_error_naming_the_key(tmp_path):
    settings = load_settings(environ={"TELESALES_TELEPHONY_SEATS": "1", "TELESALES_TELEPHONY_CODECS": "PCMA,opus"})
    with pytest.raises(SettingsError, match="telephony.codecs"):
        seat_configs(settings)
