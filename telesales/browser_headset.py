"""The browser headset: an agent page's microphone and speaker as the agent's side of their calls.

The page keeps one WebSocket open for the shift (GET /api/v1/agent/headset), the way a SIP headset
leg stays up. Binary messages are frames in the system's one format (telephony.frames: 16 kHz mono
s16, 20 ms, 640 bytes); text messages are JSON objects.

  page -> service   microphone frames while a call is up, injected into the seat's media tap with
                    to="both": the customer hears them and the recording's left (agent) channel holds them
  service -> page   the customer's frames of the call (the tap's "customer" direction), 50 a second,
                    with a supervisor's whisper or barge mixed in (`speak_to`: the seat sends those only
                    to a SIP headset leg, so a browser agent hears them through here);
                    {"type": "call", "call_id": ...} when one of the agent's seat calls is answered,
                    {"type": "idle"} when it ends, {"type": "error", "message": ...} when it cannot be
                    tapped, and each second {"type": "stats", "mic_frames", "mic_dropped", "ear_frames",
                    "ear_dropped", "call_id"} so the page can show whether audio flows both ways.

One live browser headset per agent: a second page takes over and the first is told so and closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid

import asyncpg
import numpy as np
from aiohttp import WSMsgType, web

from telephony.client import SeatUnavailable
from telephony.frames import FRAME_BYTES
from telephony.protocol import CommandError

log = logging.getLogger("telesales.headset")

# Seat events wake the headset at once; this re-check only covers one missed (the watch queue is drop-oldest).
RECHECK_SECONDS = 1.0
STATS_SECONDS = 1.0
CLOSE_TAKEN_OVER = 4001  # WebSocket close codes 4000-4999 are the application's
CLOSE_BAD_FRAME = 1003  # "unsupported data"
# A supervisor's frames waiting to be mixed into the agent's ear (0.5 s): a voice running ahead of the
# call's clock loses its oldest frames instead of lagging further and further behind.
SPOKEN_FRAMES = 25


def speak_to(seats, call_id: uuid.UUID | str, pcm: bytes) -> bool:
    """A supervisor's frame (whisper or barge) into the ear of the browser-headset agent on `call_id`;
    False when no browser headset is on that call (the agent hears the seat's headset leg instead)."""
    for headset in list(getattr(seats, "browser_headsets", {}).values()):
        if headset.call_id is not None and str(headset.call_id) == str(call_id):
            headset.spoken.append(pcm)
            return True
    return False


def _mix(customer: bytes, spoken: bytes) -> bytes:
    """Two frames of s16 PCM added, clipped at full scale (what the seat's conference bridge does)."""
    total = np.frombuffer(customer, dtype="<i2").astype(np.int32) + np.frombuffer(spoken, dtype="<i2")
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


class BrowserHeadset:
    def __init__(self, pool: asyncpg.Pool, seats, agent_id: int, ws: web.WebSocketResponse) -> None:
        self.pool = pool
        self.seats = seats
        self.agent_id = agent_id
        self.ws = ws
        self.tap = None  # the open media tap while a call is up
        self.call_id: uuid.UUID | None = None
        self.mic_frames = 0  # injected into the call
        self.mic_dropped = 0  # came while no call was up, or the seat refused them
        self.ear_frames = 0
        self.spoken: collections.deque[bytes] = collections.deque(maxlen=SPOKEN_FRAMES)  # see speak_to
        self._untappable: set[uuid.UUID] = set()

    async def run(self) -> None:
        """Serve the socket until the page goes (or another page takes over); every task is awaited."""
        previous = self.seats.browser_headsets.get(self.agent_id)
        self.seats.browser_headsets[self.agent_id] = self
        if previous is not None:
            await previous.take_over()
        tasks = [asyncio.create_task(coro, name=f"headset-{self.agent_id}-{coro.__name__}")
                 for coro in (self._receive(), self._follow_calls(), self._report())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            if self.seats.browser_headsets.get(self.agent_id) is self:
                del self.seats.browser_headsets[self.agent_id]
        for task in done:  # a socket that went away is the normal end; anything else is logged
            if not task.cancelled() and isinstance(task.exception(), Exception) \
                    and not isinstance(task.exception(), ConnectionError):
                log.error("browser headset task failed", exc_info=task.exception(),
                          extra={"agent_id": self.agent_id})

    async def take_over(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.ws.send_json({"type": "taken_over", "message": "your headset moved to another page"})
        await self.ws.close(code=CLOSE_TAKEN_OVER, message=b"headset taken over by another page")

    # --- page -> call -------------------------------------------------------------------

    async def _receive(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY:
                continue  # text from the page carries nothing the service acts on yet
            if len(msg.data) != FRAME_BYTES:
                await self.ws.close(code=CLOSE_BAD_FRAME, message=f"a frame is {FRAME_BYTES} bytes (20 ms, "
                                    f"16 kHz mono s16), got {len(msg.data)}".encode())
                return
            tap = self.tap
            if tap is None:
                self.mic_dropped += 1
                continue
            try:
                await tap.inject(msg.data, to="both")
                self.mic_frames += 1
            except (ConnectionError, SeatUnavailable):  # the call ended between two frames
                self.mic_dropped += 1

    # --- call -> page -------------------------------------------------------------------

    async def _follow_calls(self) -> None:
        with self.seats.watch_calls() as changed:
            while True:
                call = await self._answered_call()
                if call is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.get(), RECHECK_SECONDS)
                    continue
                await self._serve(call)

    async def _answered_call(self) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(
                """select id, seat from calls
                   where agent_id = $1 and seat is not null and answered_at is not null and ended_at is null
                     and not (id = any($2::uuid[]))
                   order by answered_at desc limit 1""",
                self.agent_id, list(self._untappable),
            )

    async def _serve(self, call: asyncpg.Record) -> None:
        try:
            tap = await self.seats.manager.seat(call["seat"]).open_tap(call["id"])
        except (CommandError, SeatUnavailable, KeyError) as e:
            # Ended between the query and the tap, or a seat without a media link: not tried again.
            self._untappable.add(call["id"])
            log.warning("browser headset cannot tap the call: %s", e,
                        extra={"agent_id": self.agent_id, "call_id": str(call["id"])})
            await self.ws.send_json({"type": "error", "call_id": str(call["id"]),
                                     "message": f"the call's audio cannot reach this page: {e}"})
            return
        self.spoken.clear()
        self.tap, self.call_id = tap, call["id"]
        log.info("browser headset on call", extra={"agent_id": self.agent_id, "call_id": str(call["id"])})
        try:
            await self.ws.send_json({"type": "call", "call_id": str(call["id"])})
            async for frame in tap:
                if frame.direction == "customer":
                    # The customer's frames keep the call's clock: one supervisor frame rides on each.
                    pcm = _mix(frame.pcm, self.spoken.popleft()) if self.spoken else frame.pcm
                    await self.ws.send_bytes(pcm)
                    self.ear_frames += 1
        finally:
            self.tap = None
            await tap.aclose()
        # The tap ended with the call; its row may lag the seat's event by a moment.
        self._untappable.add(call["id"])
        self.call_id = None
        self.spoken.clear()
        await self.ws.send_json({"type": "idle"})

    async def _report(self) -> None:
        while True:
            tap = self.tap
            await self.ws.send_json({
                "type": "stats", "call_id": None if self.call_id is None else str(self.call_id),
                "mic_frames": self.mic_frames, "mic_dropped": self.mic_dropped,
                "ear_frames": self.ear_frames, "ear_dropped": 0 if tap is None else tap.dropped,
            })
            await asyncio.sleep(STATS_SECONDS)
