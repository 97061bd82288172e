"""Live call audio for supervisors: one seat media tap per call, fanned out to every listener.

Several supervisors may listen to one call. The seat sends each call's frames once (one tap, so 50
listeners cost the seat and its media link no more than one); the service copies each frame into
every listener's bounded drop-oldest queue, and each listener's WebSocket sender takes what is
waiting. A slow browser only loses its own oldest frames (counted in `dropped`): the pump never
waits for a listener, and the seat never waits for the service (telephony/media_link.py).

A supervisor who whispers or barges gets a tap of their own to inject into (`Speaker`), so two
supervisors talking at once never interleave frames in one injection buffer. Its received frames
are left to the tap's own drop-oldest queue: nobody reads them, nothing waits on them.

Wire format of a listener's binary WebSocket message: one or more records of 641 bytes, each a
direction byte (0 = customer, 1 = agent side) and 20 ms of 16 kHz mono s16 little-endian PCM.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import weakref
from typing import Any

from telephony.client import SeatUnavailable
from telephony.frames import FRAME_BYTES
from telephony.taps import MediaTap

log = logging.getLogger("telesales.listen")

DIRECTION_CODES = {"customer": 0, "agent": 1}
RECORD_BYTES = 1 + FRAME_BYTES


class Listener:
    """One browser's queue: bounded, drop-oldest; `take()` hands over everything waiting at once."""

    def __init__(self, max_frames: int) -> None:
        self._frames: collections.deque[bytes] = collections.deque(maxlen=max_frames)
        self._wake = asyncio.Event()
        self.ended = False
        self.dropped = 0
        # monotonic time the oldest waiting frame entered the service (for bench/listen_latency.py)
        self.oldest_at: float | None = None

    def offer(self, record: bytes, at: float) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        if not self._frames:
            self.oldest_at = at
        self._frames.append(record)
        self._wake.set()

    def end(self) -> None:
        self.ended = True
        self._wake.set()

    async def take(self) -> bytes | None:
        """The waiting records joined into one message; None once the feed ended and nothing is left."""
        while not self._frames:
            if self.ended:
                return None
            self._wake.clear()
            await self._wake.wait()
        out = b"".join(self._frames)
        self._frames.clear()
        self.oldest_at = None
        return out


class CallFeed:
    """The tap of one call and the pump that copies its frames to the listeners."""

    def __init__(self, hub: ListenHub, call_id: str, tap: MediaTap) -> None:
        self.hub, self.call_id, self.tap = hub, call_id, tap
        self.listeners: set[Listener] = set()
        self.ended = False
        self.task = asyncio.get_running_loop().create_task(self._pump(), name=f"listen-{call_id[:8]}")

    async def _pump(self) -> None:
        try:
            async for frame in self.tap:
                record = bytes((DIRECTION_CODES[frame.direction],)) + frame.pcm
                now = time.monotonic()
                for listener in self.listeners:
                    listener.offer(record, now)
        finally:
            self.ended = True
            for listener in self.listeners:
                listener.end()
            self.hub._forget(self)


class ListenHub:
    """The feeds of one service's seats, by call id."""

    def __init__(self, seat_client, max_frames: int) -> None:
        self._seat_client = seat_client  # name -> SeatClient (SeatManager.seat)
        self.max_frames = max_frames
        self._feeds: dict[str, CallFeed] = {}
        # One lock for all calls: opening or closing a tap takes a seat round trip (a millisecond or so),
        # and one lock cannot leak an entry per call the way a lock per call would.
        self._lock = asyncio.Lock()

    async def subscribe(self, seat: str, call_id: str) -> Listener:
        """A new listener on the call (opening its tap if it is the first); SeatUnavailable / CommandError
        when the seat cannot tap it."""
        async with self._lock:
            feed = self._feeds.get(call_id)
            if feed is None or feed.ended:
                tap = await self._seat_client(seat).open_tap(call_id)
                feed = self._feeds[call_id] = CallFeed(self, call_id, tap)
            listener = Listener(self.max_frames)
            feed.listeners.add(listener)
            return listener

    async def unsubscribe(self, call_id: str, listener: Listener) -> None:
        async with self._lock:
            feed = self._feeds.get(call_id)
            if feed is None or listener not in feed.listeners:
                return
            feed.listeners.discard(listener)
            if not feed.listeners:
                self._feeds.pop(call_id, None)
                await feed.tap.aclose()  # the seat stops sending; the pump ends
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.task

    def listeners(self, call_id: str) -> int:
        feed = self._feeds.get(call_id)
        return len(feed.listeners) if feed else 0

    def _forget(self, feed: CallFeed) -> None:
        if self._feeds.get(feed.call_id) is feed:
            del self._feeds[feed.call_id]


class Speaker:
    """A supervisor's own tap for whisper and barge frames, opened at the first frame."""

    def __init__(self, seat_client, seat: str, call_id: str) -> None:
        self._seat_client, self.seat, self.call_id = seat_client, seat, call_id
        self._tap: MediaTap | None = None

    async def say(self, pcm: bytes, to: str) -> None:
        if self._tap is None:
            self._tap = await self._seat_client(self.seat).open_tap(self.call_id)
        await self._tap.inject(pcm, to=to)

    async def aclose(self) -> None:
        if self._tap is not None:
            with contextlib.suppress(SeatUnavailable, ConnectionError):
                await self._tap.aclose()
            self._tap = None


_HUBS: weakref.WeakKeyDictionary[Any, ListenHub] = weakref.WeakKeyDictionary()


def hub_for(seats: Any, max_frames: int) -> ListenHub:
    """The hub of a service's seats (AppContext.seats: anything with .manager.seat(name))."""
    hub = _HUBS.get(seats)
    if hub is None:
        hub = _HUBS[seats] = ListenHub(seats.manager.seat, max_frames)
    return hub
