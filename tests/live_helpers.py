"""A service with one real seat and a live QA worker (the real qa.live_worker code, in the test's event loop,
on its own pool, tapping the call over HTTP like a worker process), shared by the live tests and the bench."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time

import numpy as np

from crm import db
from crm.live import EVENTS_CHANNEL
from qa.live import live_options
from qa.live_worker import LiveWorker
from qa.pipeline import qa_options

FRAME = 640


@contextlib.asynccontextmanager
async def live_worker(db_url: str, settings, model, service_url: str, **overrides):
    options = dataclasses.replace(live_options(settings), service_url=service_url, poll_s=0.5, **overrides)
    pool = await db.create_pool(db_url, 1, 4)
    worker = LiveWorker(pool, model, "test-live", options, qa_options(settings.qa))
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    try:
        yield worker
    finally:
        stopping.set()
        await asyncio.wait_for(task, 60)
        await pool.close()


@contextlib.asynccontextmanager
async def listening(db_url: str):
    conn = await db.connect(db_url)
    events: list[dict] = []
    await conn.add_listener(EVENTS_CHANNEL, lambda c, pid, ch, payload: events.append(json.loads(payload)))
    try:
        yield events
    finally:
        await conn.close()


async def inject_paced(tap, samples: np.ndarray) -> float:
    """Play samples into the call as the agent (to both parties) in real time; returns time.time() at the end."""
    pcm = samples.astype("<i2").tobytes()
    pcm += b"\0" * (-len(pcm) % FRAME)
    start = time.monotonic()
    for n, i in enumerate(range(0, len(pcm), FRAME)):
        await tap.inject(pcm[i:i + FRAME], to="both")
        delay = start + (n + 1) * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return time.time()


async def messages(ws, until, timeout: float) -> list[dict]:
    """JSON messages from a WebSocket until until(received) holds; AssertionError after timeout."""
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(received):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s; received {received}")
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            continue
        if msg.type.name != "TEXT":
            raise AssertionError(f"WebSocket ended: {msg.type} {msg.data}; received {received}")
        received.append(json.loads(msg.data))
    return received
