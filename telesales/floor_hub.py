"""The floor hub: one in-process fan-out of wallboard events to every subscribed browser.

publish() never waits: each subscriber has its own bounded queue, and a
subscriber whose queue is full (a slow or stalled browser) loses its queued
events and gets one RESYNC marker instead, which its writer answers with a
fresh snapshot. So a slow browser costs at most `queue_size` events of memory
and never delays the call path or the other browsers.

Events are JSON objects with a "type": agent, agent_gone, campaign, queue,
alert. An event with a "team_id" key goes only to subscribers watching that
team (None: agents with no team, seen only by unrestricted subscribers).
The hub remembers the last state of each queue and the last alerts, so a
snapshot can include them.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from telesales.web import dumps

RESYNC = "resync"  # the marker a full queue is replaced with (never a JSON text, which starts with "{")


@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue
    # Teams watched; None: all, including agents with no team.
    teams: frozenset[int] | None = None
    dropped: int = 0  # events thrown away because the queue was full
    resyncs: int = 0
    delivered: int = field(default=0)

    def wants(self, event: dict) -> bool:
        if self.teams is None or "team_id" not in event:
            return True
        return event["team_id"] in self.teams

    def offer(self, text: str) -> None:
        try:
            self.queue.put_nowait(text)
            self.delivered += 1
        except asyncio.QueueFull:
            # Coalesce: whatever was queued is stale once a snapshot follows.
            while not self.queue.empty():
                self.queue.get_nowait()
                self.dropped += 1
            self.dropped += 1
            self.resyncs += 1
            self.queue.put_nowait(RESYNC)


class FloorHub:
    def __init__(self, queue_size: int = 256, keep_alerts: int = 50) -> None:
        if queue_size < 2:
            raise ValueError("queue_size must be at least 2")
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self.queues: dict[str, dict] = {}  # queue name -> its last event
        self.alerts: collections.deque[dict] = collections.deque(maxlen=keep_alerts)

    def subscribe(self, teams: list[int] | None = None) -> Subscription:
        sub = Subscription(asyncio.Queue(self.queue_size), None if teams is None else frozenset(teams))
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    def publish(self, event: dict) -> None:
        """Hand `event` to every subscriber that watches it; returns at once, whatever they do."""
        self._remember(event)
        text = dumps(event)  # once, not per subscriber
        for sub in self._subs:
            if sub.wants(event):
                sub.offer(text)

    def _remember(self, event: dict) -> None:
        if event.get("type") == "queue":
            self.queues[event["queue"]] = event
        elif event.get("type") == "alert":
            self.alerts.append(event)

    def recent_alerts(self, sub: Subscription) -> list[dict]:
        return [a for a in self.alerts if sub.wants(a)]
