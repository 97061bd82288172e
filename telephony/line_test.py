"""The line test: place one call through a short-lived seat and report how it went.

The company checks a phone line before calling customers on it. This runs
without the service (no database): a seat process is started on a free port,
the call is placed, the local side plays an optional WAV, and the result is
one record with status, SIP code, timestamps, talk time, who hung up, the
recording and RTCP quality.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import socket
from dataclasses import dataclass
from typing import Any

from telephony import events as ev
from telephony.config import SeatConfig
from telephony.manager import SeatManager

# Hang-up causes (telephony.calls) -> line test status; anything unlisted is "failed".
_STATUS = {"busy": "busy", "no_answer": "no_answer", "rejected": "rejected", "forbidden": "rejected"}


class LineTestError(Exception):
    """The call never finished within the time allowed."""


@dataclass(frozen=True)
class LineTestResult:
    target: str
    status: str  # answered, busy, no_answer, rejected, failed
    sip_code: int
    reason: str
    started_at: str
    ringing_at: str | None
    answered_at: str | None
    ended_at: str
    talk_seconds: float
    hangup_side: str
    hangup_cause: str
    recording_path: str | None
    recording_sha256: str | None
    quality: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _iso(event: ev.Event | None) -> str | None:
    return dt.datetime.fromtimestamp(event.ts, dt.UTC).isoformat() if event else None


def summarise(target: str, seen: dict[type, ev.Event]) -> LineTestResult:
    started, ended = seen[ev.CallStarted], seen[ev.CallEnded]
    answered, closed = seen.get(ev.CallAnswered), seen.get(ev.RecordingClosed)
    status = "answered" if answered else _STATUS.get(ended.cause, "failed")
    return LineTestResult(
        target=target, status=status, sip_code=ended.sip_code, reason=ended.reason,
        started_at=_iso(started), ringing_at=_iso(seen.get(ev.CallRinging)), answered_at=_iso(answered),
        ended_at=_iso(ended), talk_seconds=round(ended.ts - answered.ts, 3) if answered else 0.0,
        hangup_side=ended.side, hangup_cause=ended.cause,
        recording_path=closed.path if closed else None, recording_sha256=closed.sha256 if closed else None,
        quality=ended.quality,
    )


async def run_line_test(
    cfg: SeatConfig,
    target: str,
    *,
    play: str | None = None,
    hangup_after: float | None = None,
    ring_timeout: float | None = None,
    limit: float = 300.0,
) -> LineTestResult:
    """Place one call from a seat built from cfg (its port replaced by a free one) and wait for its end."""
    cfg = cfg.with_port("line-test", free_udp_port(cfg.bind_address))
    manager = SeatManager([cfg])
    await manager.start()
    queue: asyncio.Queue[ev.Event] = asyncio.Queue()
    pump = asyncio.create_task(_pump(manager, queue))
    try:
        client = manager.seat(cfg.name)
        call_id = await client.dial(target, ring_timeout=ring_timeout, play=play)
        seen = await _follow(client, queue, call_id, hangup_after, limit)
        return summarise(target, seen)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await manager.stop()


async def _pump(manager: SeatManager, queue: asyncio.Queue) -> None:
    # A queue in between: waiting on it with a timeout is safe, cancelling an async generator is not.
    async for event in manager.events():
        queue.put_nowait(event)


def _finished(seen: dict[type, ev.Event]) -> bool:
    recording_done = ev.RecordingStarted not in seen or ev.RecordingClosed in seen
    return ev.CallEnded in seen and recording_done


async def _follow(client, queue: asyncio.Queue, call_id: str, hangup_after: float | None,
                  limit: float) -> dict[type, ev.Event]:
    loop = asyncio.get_running_loop()
    deadline, hangup_at = loop.time() + limit, None
    seen: dict[type, ev.Event] = {}
    while not _finished(seen):
        wake = min(deadline, hangup_at) if hangup_at else deadline
        try:
            event = await asyncio.wait_for(queue.get(), max(wake - loop.time(), 0))
        except TimeoutError:
            if hangup_at and loop.time() >= hangup_at:
                hangup_at = None
                await client.hangup(call_id)
                continue
            raise LineTestError(f"the call did not end within {limit}s") from None
        if getattr(event, "call_id", None) != call_id:
            continue
        seen.setdefault(type(event), event)
        if isinstance(event, ev.CallAnswered) and hangup_after is not None:
            hangup_at = loop.time() + hangup_after
    return seen
