"""The line test places one real call and reports it as one record."""

from __future__ import annotations

import pytest
from sip_helpers import speech_wav

from telephony.config import SeatConfig
from telephony.line_test import run_line_test
from telephony.recording import sha256_file
from telesales.seats import line_test
from telesales.settings import load_settings


async def test_an_answered_line_reports_talk_time_recording_and_quality(peers, tmp_path):
    sim = await peers("--answer-after", "0.2")
    voice = speech_wav(tmp_path, "Testing the line, one two three.", "agent")
    settings = load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path / "var")})

    result = await line_test(settings, sim.uri, play=str(voice), hangup_after=1.5)

    assert (result.status, result.sip_code, result.hangup_side) == ("answered", 200, "agent")
    assert 1.2 <= result.talk_seconds <= 4
    assert result.started_at <= result.ringing_at <= result.answered_at <= result.ended_at
    assert result.recording_path.startswith(str(tmp_path / "var" / "recordings"))
    assert result.recording_sha256 == sha256_file(result.recording_path)
    assert result.quality["mos"] > 4
    assert set(result.to_dict()) >= {"status", "sip_code", "talk_seconds", "quality"}


@pytest.mark.parametrize(("sim_args", "status", "code"), [
    (("--reject", "486"), "busy", 486),
    (("--reject", "603"), "rejected", 603),
    ((), "no_answer", 487),
], ids=["busy", "declined", "rings-out"])
async def test_an_unanswered_line_reports_why(peers, tmp_path, sim_args, status, code):
    sim = await peers(*sim_args)
    cfg = SeatConfig(name="x", sip_port=0, recordings_dir=str(tmp_path))
    result = await run_line_test(cfg, sim.uri, ring_timeout=1.0)
    assert (result.status, result.sip_code, result.talk_seconds) == (status, code, 0.0)
    assert result.answered_at is None and result.recording_path is None


async def test_telesales_call_command_prints_the_call_record_as_json(peers, tmp_path):
    import json
    import os
    import subprocess
    import sys

    sim = await peers("--answer-after", "0.2", "--hangup-after", "1")
    env = {**os.environ, "TELESALES_DATA_DIR": str(tmp_path / "var")}
    result = subprocess.run([sys.executable, "-m", "telesales", "call", sim.uri, "--json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert (record["status"], record["sip_code"], record["hangup_side"]) == ("answered", 200, "customer")
    assert record["recording_path"].startswith(str(tmp_path / "var" / "recordings"))
