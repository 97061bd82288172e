"""Media taps on the service side: live audio of one call as an async stream, and audio to inject into it.

    tap = await client.open_tap(call_id)
    async for frame in tap:          # TapFrame(direction="customer" | "agent", pcm=640 bytes)
        ...
    await tap.inject(pcm, to="agent")  # whisper: only the agent hears it (their headset leg)
    await tap.inject(pcm, to="both")   # barge / browser microphone: the customer hears it, and it is recorded
    await tap.aclose()

Each direction comes at 50 frames per second (20 ms, 16 kHz mono s16), silence included, so the two
directions stay aligned frame by frame. A consumer that falls behind loses the oldest frames (counted
in `dropped`), never delays the call. The stream ends when the tap is closed, its call ends, or the seat
goes away.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from telephony import media_link
from telephony.frames import FRAME_BYTES

if TYPE_CHECKING:
    from telephony.client import SeatClient

# Frames a tap holds for a slow consumer (5 s of both directions) before the oldest is dropped.
TAP_QUEUE_FRAMES = 500


@dataclass(frozen=True)
class TapFrame:
    direction: str  # "customer": what the customer says; "agent": what the customer hears from the seat side
    pcm: bytes


class MediaTap:
    def __init__(self, client: SeatClient, tap_id: int, call_id: str) -> None:
        self.client = client
        self.tap_id = tap_id
        self.call_id = call_id
        self.dropped = 0
        self._queue: asyncio.Queue[TapFrame | None] = asyncio.Queue(TAP_QUEUE_FRAMES)
        self._ended = False

    def _deliver(self, frame: TapFrame | None) -> None:
        """From the client's media reader; None ends the stream."""
        if self._ended:
            return
        if frame is None:
            self._ended = True
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    def __aiter__(self) -> MediaTap:
        return self

    async def __anext__(self) -> TapFrame:
        frame = await self._queue.get()
        if frame is None:
            self._queue.put_nowait(None)  # a second iteration ends at once too
            raise StopAsyncIteration
        return frame

    async def inject(self, pcm: bytes, to: str = "both") -> None:
        if to not in media_link.INJECT_KINDS:
            raise ValueError(f"inject to must be one of {', '.join(media_link.INJECT_KINDS)}, got {to!r}")
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes (20 ms, 16 kHz mono s16), got {len(pcm)}")
        if self._ended:
            raise ConnectionError(f"tap {self.tap_id} on call {self.call_id} is closed")
        await self.client._send_media(self.tap_id, media_link.INJECT_KINDS[to], pcm)

    async def aclose(self) -> None:
        if not self._ended:
            await self.client._close_tap(self)
        self._deliver(None)

    async def __aenter__(self) -> MediaTap:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
