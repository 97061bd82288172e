"""Post-call Whisper runs below the rest of the host (qa.nice): the seats' media and the live transcript come first."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from qa.pipeline import load_model
from telesales.settings import SettingsError, load_settings


def _threads() -> dict[str, tuple[int, int]]:
    """This process's threads: id -> (nice, CPU ticks used)."""
    out = {}
    for stat in Path("/proc/self/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        out[stat.parent.name] = (int(fields[16]), int(fields[11]) + int(fields[12]))
    return out


def test_the_post_call_model_computes_on_threads_niced_by_qa_nice_and_the_caller_keeps_its_priority(
    whisper_data_dir,
):
    settings = load_settings(environ={"TELESALES_DATA_DIR": str(whisper_data_dir)})
    assert settings.qa.nice == 10
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    before = _threads()
    model = load_model(settings)
    mel = np.zeros((2, 80, 3000), np.float32)
    for _ in range(2):
        model.encode(mel)
    new = {tid: v for tid, v in _threads().items() if tid not in before}
    assert sum(cpu for _, cpu in new.values()) > 0, "the encoder ran on the model's own threads"
    assert {nice for nice, _ in new.values()} == {min(19, mine + 10)}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_a_bad_nice_names_its_key(tmp_path):
    settings = load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path), "TELESALES_QA_NICE": "25"})
    with pytest.raises(SettingsError, match="qa.nice"):
        load_model(settings)
