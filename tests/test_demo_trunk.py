"""The demo trunk: with no SIP provider, `telesales serve` runs telephony/sim so a newcomer can place a call."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import wave

import pytest
from sip_helpers import channel_rms, free_udp_port, udp_port_taken, wait_until

from telephony.config import SeatConfig
from telephony.line_test import run_line_test
from telesales.demo_trunk import DemoTrunk, demo_audio, demo_trunk_config, route_desk_to_demo
from telesales.settings import SettingsError, load_settings


def settings_with(tmp_path, **telephony):
    env = {"TELESALES_DATA_DIR": str(tmp_path / "var")}
    env.update({f"TELESALES_TELEPHONY_{k.upper()}": str(v) for k, v in telephony.items()})
    return load_settings(environ=env)


def test_auto_runs_the_demo_trunk_only_while_no_provider_is_configured(tmp_path):
    cfg = demo_trunk_config(settings_with(tmp_path))
    assert cfg is not None and cfg.uri == "sip:demo@127.0.0.1:5090"
    assert cfg.folder == tmp_path / "var" / "demo"
    assert demo_trunk_config(settings_with(tmp_path, registrar="sip:pbx.example:5060")) is None
    assert demo_trunk_config(settings_with(tmp_path, allowed_peers="192.0.2.10")) is None
    assert demo_trunk_config(settings_with(tmp_path, demo_trunk="off")) is None
    assert demo_trunk_config(settings_with(tmp_path, demo_trunk="on", registrar="sip:pbx.example:5060")) is not None


def test_the_agent_desk_dials_through_the_demo_trunk_unless_a_dial_uri_is_set(tmp_path):
    settings = settings_with(tmp_path)
    route_desk_to_demo(settings, demo_trunk_config(settings))
    assert settings.dialer.dial_uri == "sip:{number}@127.0.0.1:5090"
    assert settings.dialer.line_test_uri == "sip:demo@127.0.0.1:5090"

    own = load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path / "var"),
                                 "TELESALES_DIALER_DIAL_URI": "sip:{number}@trunk.example"})
    route_desk_to_demo(own, demo_trunk_config(own))
    assert own.dialer.dial_uri == "sip:{number}@trunk.example"

    no_trunk = settings_with(tmp_path, demo_trunk="off")
    route_desk_to_demo(no_trunk, demo_trunk_config(no_trunk))
    assert no_trunk.dialer.dial_uri == ""


def test_a_bad_demo_trunk_setting_names_the_key(tmp_path):
    with pytest.raises(SettingsError, match="telephony.demo_trunk"):
        demo_trunk_config(settings_with(tmp_path, demo_trunk="yes"))


async def test_without_espeak_ng_the_trunk_plays_a_tone_and_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on this PATH
    with caplog.at_level(logging.WARNING, logger="telesales.demo_trunk"):
        files = await demo_audio(tmp_path / "demo")
    assert "espeak-ng is not installed" in caplog.text
    with wave.open(str(files[0])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (16000, 1, 16000)


async def test_the_demo_trunk_answers_a_call_with_speech_and_is_stopped_by_its_owner(tmp_path):
    cfg = demo_trunk_config(settings_with(tmp_path, demo_trunk_port=free_udp_port()))
    trunk = DemoTrunk(cfg)
    trunk.start()
    try:
        await wait_until(trunk.ready.is_set, timeout=30, what="the demo trunk to listen")
        greeting = cfg.folder / "greeting.wav"
        made_at = greeting.stat().st_mtime_ns
        seat = SeatConfig(name="x", sip_port=0, recordings_dir=str(tmp_path / "recordings"))
        result = await run_line_test(seat, cfg.uri, hangup_after=3.0)
    finally:
        await trunk.stop()

    assert (result.status, result.sip_code, result.hangup_side) == ("answered", 200, "agent")
    _, customer = channel_rms(result.recording_path)
    assert customer > 300, f"the demo trunk said nothing: rms {customer}"
    assert trunk.proc.returncode is not None and not udp_port_taken(cfg.port)
    await demo_audio(cfg.folder)
    assert greeting.stat().st_mtime_ns == made_at  # cached: espeak-ng runs once per data folder


# --- as `make run` starts it -----------------------------------------------------------


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(proc, pattern: str, deadline_s: float = 90) -> re.Match:
    deadline, seen = time.monotonic() + deadline_s, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    raise AssertionError(f"no line matching {pattern!r}:\n{''.join(seen)}")


async def test_telesales_serve_starts_a_demo_trunk_that_telesales_call_reaches(db_url, tmp_path):
    # The test database instead of a fresh embedded server: the same service, without initdb's 20 s.
    trunk_port = free_udp_port()
    env = {**os.environ, "TELESALES_DATA_DIR": str(tmp_path / "var"), "TELESALES_DATABASE_URL": db_url,
           "TELESALES_HTTP_PORT": str(_free_tcp_port()), "TELESALES_TELEPHONY_SIP_BASE_PORT": str(free_udp_port()),
           "TELESALES_TELEPHONY_DEMO_TRUNK_PORT": str(trunk_port)}
    serve = subprocess.Popen([sys.executable, "-m", "telesales", "serve"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        uri = _read_until(serve, r"place a test call with: telesales call (\S+)").group(1)
        assert uri == f"sip:demo@127.0.0.1:{trunk_port}"
        call = subprocess.run([sys.executable, "-m", "telesales", "call", uri, "--hangup-after", "1", "--json"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert call.returncode == 0, call.stderr[-2000:]
        record = json.loads(call.stdout.strip().splitlines()[-1])
        assert (record["status"], record["sip_code"]) == ("answered", 200)
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0
    assert not udp_port_taken(trunk_port), "the service left its demo trunk running"
