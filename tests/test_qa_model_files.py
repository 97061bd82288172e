"""The bundled Whisper base model: joined once from its two packages, verified, reused."""

from __future__ import annotations

import json

import pytest

from qa.model_files import ModelFilesError, bundled_model_dir, resolve_model


def test_the_model_is_joined_once_with_its_checksum_recorded(tmp_path):
    folder = bundled_model_dir(tmp_path)
    assert folder == tmp_path / "models" / "whisper-base"
    manifest = json.loads((folder / "telesales-manifest.json").read_text())
    assert (folder / "model.bin").stat().st_size == manifest["model_bin_size"] == 145217532
    assert len(manifest["model_bin_sha256"]) == 64
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}
    assert [p.name for p in folder.parent.iterdir()] == ["whisper-base"]  # no temp folder left behind

    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert bundled_model_dir(tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_a_damaged_cache_is_rebuilt(tmp_path):
    folder = bundled_model_dir(tmp_path)
    with open(folder / "model.bin", "r+b") as f:
        f.truncate(1000)
    bundled_model_dir(tmp_path)
    assert (folder / "model.bin").stat().st_size == 145217532


def test_a_configured_model_folder_is_used_as_it_is(tmp_path):
    (tmp_path / "large").mkdir()
    (tmp_path / "large" / "model.bin").write_bytes(b"x")
    assert resolve_model(str(tmp_path / "large"), tmp_path / "var") == str(tmp_path / "large")


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelFilesError, match="not a CTranslate2 model folder"):
        resolve_model(str(tmp_path), tmp_path / "var")
    with pytest.raises(ModelFilesError, match="no such folder"):
        resolve_model(str(tmp_path / "nope"), tmp_path / "var")


def test_a_model_name_is_passed_on_for_the_hub_cache(tmp_path):
    assert resolve_model("large-v3", tmp_path) == "large-v3"
