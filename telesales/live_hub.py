"""Fan-out of the `live_events` channel to the supervisors' WebSockets in this service process.

One database connection LISTENs for all of them, held only while someone is
subscribed. Each subscriber has its own bounded queue: a browser that reads
too slowly loses its oldest events (and is told so), it never holds up the
notifications of the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref

import asyncpg

from crm.live import EVENTS_CHANNEL

log = logging.getLogger("telesales.live")

QUEUE_EVENTS = 256


class Subscription:
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.queue: asyncio.Queue[dict] = asyncio.Queue(QUEUE_EVENTS)
        self.dropped = 0

    def put(self, event: dict) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class LiveHub:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._subs: set[Subscription] = set()
        self._conn = None
        self._lock = asyncio.Lock()

    async def subscribe(self, call_id: str) -> Subscription:
        sub = Subscription(call_id)
        async with self._lock:
            if self._conn is None:
                conn = await self.pool.acquire()
                await conn.add_listener(EVENTS_CHANNEL, self._notified)
                self._conn = conn
            self._subs.add(sub)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        async with self._lock:
            self._subs.discard(sub)
            if not self._subs and self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    await conn.remove_listener(EVENTS_CHANNEL, self._notified)
                finally:
                    await self.pool.release(conn)

    def _notified(self, conn, pid, channel, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("live event that is not JSON", extra={"payload": payload[:200]})
            return
        for sub in self._subs:
            if sub.call_id == event.get("call_id"):
                sub.put(event)


_HUBS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hub_for(app, pool: asyncpg.Pool) -> LiveHub:
    """The app's hub (made on first use: the app is frozen by then, so it is kept beside it, not in it)."""
    hub = _HUBS.get(app)
    if hub is None:
        hub = _HUBS[app] = LiveHub(pool)
    return hub
