"""Where a worker gets a job's recording: the service's data folder, or the service's HTTP API.

A worker on the service's machine reads `<data_dir>/<recording_path>`. A worker
on another machine (`qa.recordings_url` set) downloads it with its worker
token into a temporary file. Either way the file must match the sha256 taken
at hang-up, so a worker never scores a recording that changed or arrived cut.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import aiohttp

from qa.audio import RecordingError
from telesales.settings import SettingsError

CHUNK = 1 << 16


class WorkerTokenRefused(RuntimeError):
    """The service refused the worker token: a setting to fix, not a fault of the job."""


@dataclass(frozen=True)
class RemoteRecordings:
    base_url: str
    token: str
    timeout_s: float = 300.0


def remote_recordings(qa: SimpleNamespace) -> RemoteRecordings | None:
    """The service to download recordings from (qa.recordings_url, qa.worker_token), or None: local files."""
    url = qa.recordings_url.strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"qa.recordings_url: must start with http:// or https://, got {url!r}")
    if not qa.worker_token.strip():
        raise SettingsError("qa.worker_token: needed with qa.recordings_url (make one: telesales qa token create NAME)")
    return RemoteRecordings(url.rstrip("/"), qa.worker_token.strip())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(expected: str | None, actual: str, what: str) -> None:
    if expected and actual != expected:
        raise RecordingError(f"{what}: checksum differs from the one taken at hang-up")


async def _download(http: aiohttp.ClientSession, remote: RemoteRecordings, call_id: str, dest: Path) -> str:
    """Stream the recording into dest; returns its sha256."""
    url = f"{remote.base_url}/api/v1/qa/recordings/{call_id}"
    headers = {"Authorization": f"Bearer {remote.token}"}
    timeout = aiohttp.ClientTimeout(total=remote.timeout_s)
    async with http.get(url, headers=headers, timeout=timeout) as resp:
        if resp.status in (401, 403):
            raise WorkerTokenRefused(f"{url}: HTTP {resp.status}; the worker token is wrong or revoked")
        if resp.status == 404:
            raise RecordingError(f"{url}: the service has no recording for call {call_id}")
        if resp.status != 200:
            raise ConnectionError(f"{url}: HTTP {resp.status}")  # the service's trouble: retried after a backoff
        digest = hashlib.sha256()
        with dest.open("wb") as f:
            async for chunk in resp.content.iter_chunked(CHUNK):
                f.write(chunk)
                digest.update(chunk)
    return digest.hexdigest()


@asynccontextmanager
async def recording_file(
    job, data_dir: Path, remote: RemoteRecordings | None, http: aiohttp.ClientSession | None
) -> AsyncIterator[Path]:
    """The job's recording as a local file, checked against its sha256; a downloaded copy is deleted after."""
    if remote is None:
        path = Path(data_dir) / job["recording_path"]
        if job["recording_sha256"]:
            _check(job["recording_sha256"], await asyncio.to_thread(sha256_of, path), job["recording_path"])
        yield path
        return
    fd, name = tempfile.mkstemp(prefix=f"qa-{job['call_id']}-", suffix=".wav")
    os.close(fd)
    dest = Path(name)
    try:
        actual = await _download(http, remote, str(job["call_id"]), dest)
        _check(job["recording_sha256"], actual, f"recording of call {job['call_id']} from {remote.base_url}")
        yield dest
    finally:
        dest.unlink(missing_ok=True)
