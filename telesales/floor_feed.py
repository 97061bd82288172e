"""What feeds the floor hub: PostgreSQL notices, turned into wallboard events.

One connection of the pool LISTENs on two channels:
- 'floor_events': the triggers of migration 0007 name the agents and
  campaigns a committed write touched; the feed reads their current rows
  (crm/floor.py) and publishes one event per agent / campaign. Other
  processes may send {"type": "queue", ...} there (an inbound queue).
- 'live_events': the QA worker's live path sends {"type": "alert", ...};
  the feed adds the call's agent and team and publishes it.
Notices that arrive while a read is running are merged into the next read,
so a burst costs one query, not one per row. In-process code may also call
hub.publish(queue_event(...)) directly.

The feed starts with the first wallboard subscriber (an app that nobody
watches holds no connection for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import uuid
import zoneinfo

import asyncpg
from aiohttp import web

from crm import floor
from telesales.floor_hub import FloorHub, Subscription

log = logging.getLogger("telesales.floor")

FLOOR_CHANNEL = "floor_events"
LIVE_CHANNEL = "live_events"
ALERT_KEYS = ("call_id", "kind", "speaker", "text", "at")
MAX_TEXT = 500


def queue_event(queue: str, waiting: int, longest_wait_since: str | None) -> dict:
    """A 'queue' event (calls waiting in a named queue, and since when the oldest waits)."""
    if not isinstance(queue, str) or not 0 < len(queue) <= 100:
        raise ValueError("queue must be a name of 1-100 characters")
    if isinstance(waiting, bool) or not isinstance(waiting, int) or waiting < 0:
        raise ValueError("waiting must be a whole number >= 0")
    if longest_wait_since is not None:
        dt.datetime.fromisoformat(longest_wait_since)  # raises ValueError when it is no time
    return {"type": "queue", "queue": queue, "waiting": waiting, "longest_wait_since": longest_wait_since}


def alert_event(raw: dict) -> dict:
    """The fields of a live alert the board shows; ValueError when the call id is missing or bad."""
    call_id = str(uuid.UUID(str(raw.get("call_id"))))
    event = {"type": "alert", **{k: raw.get(k) for k in ALERT_KEYS}, "call_id": call_id}
    for key in ("kind", "speaker", "text", "at"):
        if event[key] is not None:
            event[key] = str(event[key])[:MAX_TEXT]
    return event


class FloorFeed:
    def __init__(self, pool: asyncpg.Pool, hub: FloorHub, time_zone: str) -> None:
        self.pool = pool
        self.hub = hub
        self.tz = zoneinfo.ZoneInfo(time_zone)
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._start_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._agents: set[int] = set()
        self._campaigns: set[int] = set()
        self._all = False
        self._alerts: list[dict] = []

    # --- life ----------------------------------------------------------------------

    async def ensure_started(self) -> None:
        async with self._start_lock:
            if self._task is None:
                await self._listen()
                self._task = asyncio.create_task(self._run(), name="floor-feed")

    async def _listen(self) -> None:
        self._conn = await self.pool.acquire()
        await self._conn.add_listener(FLOOR_CHANNEL, self._on_notice)
        await self._conn.add_listener(LIVE_CHANNEL, self._on_notice)
        self._conn.add_termination_listener(self._on_lost)

    def _on_lost(self, _conn) -> None:
        """The database went away: listen again, and refresh everyone (notices may have been missed)."""
        log.warning("floor feed lost its database connection; reconnecting")
        self._conn = None
        asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        while self._task is not None:
            try:
                await self._listen()
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(1.0)
                continue
            self._all = True
            self._wake.set()
            return

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None and not self._conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self._conn.remove_listener(FLOOR_CHANNEL, self._on_notice)
                await self._conn.remove_listener(LIVE_CHANNEL, self._on_notice)
            self._conn.remove_termination_listener(self._on_lost)
            await self.pool.release(self._conn)
        self._conn = None

    # --- notices -------------------------------------------------------------------

    def _on_notice(self, _conn, _pid, channel: str, payload: str) -> None:
        """Called by asyncpg on the event loop: note what changed and return at once."""
        try:
            event = json.loads(payload)
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
            self._take(channel, event)
        except (ValueError, TypeError) as e:
            log.warning("ignored a %s notice: %s", channel, e, extra={"payload": payload[:200]})

    def _take(self, channel: str, event: dict) -> None:
        kind = event.get("type")
        if channel == LIVE_CHANNEL:
            if kind == "alert":
                self._alerts.append(alert_event(event))
                self._wake.set()
            return  # other live events (transcript lines) are for the call's own page
        if kind == "queue":
            self.hub.publish(queue_event(event.get("queue"), event.get("waiting"),
                                         event.get("longest_wait_since")))
        elif kind == "floor":
            if event.get("all"):
                self._all = True
            self._agents.update(int(i) for i in event.get("agents") or ())
            self._campaigns.update(int(i) for i in event.get("campaigns") or ())
            self._wake.set()
        else:
            raise ValueError(f"unknown type {kind!r}")

    async def _run(self) -> None:
        while True:
            try:
                # Today's counts start again at midnight: refresh everyone then, changed or not.
                await asyncio.wait_for(self._wake.wait(), self._seconds_to_midnight())
            except TimeoutError:
                self._all = True
            self._wake.clear()
            try:
                await self._refresh()
            except (OSError, asyncpg.PostgresError):
                log.exception("floor feed could not read the floor")
                await asyncio.sleep(0.5)
            except Exception:  # noqa: BLE001 - the board must keep running
                log.exception("floor feed failed on a batch")

    def _seconds_to_midnight(self) -> float:
        now = dt.datetime.now(dt.UTC)
        return (floor.day_start(now, self.tz) + dt.timedelta(days=1) - now).total_seconds() + 1.0

    async def _refresh(self) -> None:
        every, agents, campaigns, alerts = self._all, self._agents, self._campaigns, self._alerts
        self._all, self._agents, self._campaigns, self._alerts = False, set(), set(), []
        now = dt.datetime.now(dt.UTC)
        since = floor.day_start(now, self.tz)
        async with self.pool.acquire() as conn:
            if every or agents:
                ids = None if every else sorted(agents)
                rows = await floor.agents(conn, since=since, ids=ids)
                for row in rows:
                    self.hub.publish(agent_event(row))
                for gone in set(ids or ()) - {r["id"] for r in rows}:
                    self.hub.publish({"type": "agent_gone", "id": gone})
            if every or campaigns:
                for row in await floor.campaigns(conn, since=since, now=now,
                                                 ids=None if every else sorted(campaigns)):
                    self.hub.publish({"type": "campaign", "campaign": row})
            for alert in alerts:
                owner = await floor.call_owner(conn, alert["call_id"]) or {}
                self.hub.publish({**alert, "agent_id": owner.get("agent_id"), "agent": owner.get("agent"),
                                  "team_id": owner.get("team_id")})

    # --- snapshots ----------------------------------------------------------------

    async def snapshot(self, sub: Subscription, teams: list[int] | None) -> dict:
        """Everything a subscriber sees, now; sent on connect and after its queue overflowed."""
        now = dt.datetime.now(dt.UTC)
        since = floor.day_start(now, self.tz)
        async with self.pool.acquire() as conn:
            agent_rows = await floor.agents(conn, since=since, teams=teams)
            campaign_rows = await floor.campaigns(conn, since=since, now=now)
        return {
            "type": "snapshot", "now": now, "day_start": since,
            "agents": [agent_event(r)["agent"] for r in agent_rows],
            "campaigns": campaign_rows,
            "queues": list(self.hub.queues.values()),
            "alerts": self.hub.recent_alerts(sub),
        }


def agent_event(row: dict) -> dict:
    return {"type": "agent", "team_id": row["team_id"], "agent": row}


FLOOR = web.AppKey("floor", FloorFeed)


def setup(app: web.Application, pool: asyncpg.Pool, settings) -> None:
    """Give the app its hub and feed (started by the first wallboard subscriber, stopped at cleanup)."""
    wb = settings.wallboard
    feed = FloorFeed(pool, FloorHub(wb.subscriber_queue, wb.keep_alerts), settings.reports.time_zone)
    app[FLOOR] = feed

    async def stop(_app):
        await feed.stop()

    app.on_cleanup.append(stop)
