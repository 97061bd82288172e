"""The service side of one seat socket: commands as awaitable calls, events as an async stream.

The reader task resolves reply futures and queues events; a command that gets
no reply within its timeout raises SeatTimeout (the seat may be stuck or dead).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from telephony import events as ev
from telephony import media_link, protocol
from telephony.protocol import CommandError
from telephony.taps import MediaTap, TapFrame

log = logging.getLogger("telephony.client")


class SeatUnavailable(Exception):
    """The seat process is not running (crashed, restarting or stopped)."""


class SeatTimeout(SeatUnavailable):
    """The seat did not answer a command in time."""


class SeatClient:
    def __init__(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command_timeout: float = 5.0,
        media: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None,
    ) -> None:
        self.name = name
        self.command_timeout = command_timeout
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read(), name=f"seat-{name}-reader")
        self._media = media
        self._taps: dict[int, MediaTap] = {}
        self._tap_ids = itertools.count(1)
        self._media_task = (
            asyncio.get_running_loop().create_task(self._read_media(media[0]), name=f"seat-{name}-media")
            if media else None
        )

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                self._dispatch(protocol.decode(line))
        except (ConnectionError, ValueError) as e:
            log.error("seat %s socket: %s", self.name, e)
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(SeatUnavailable(f"seat {self.name} went away"))
            self._pending.clear()
            self._events.put_nowait(None)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "event" in msg:
            self._events.put_nowait(ev.from_dict(msg["event"]))
            return
        fut = self._pending.pop(msg.get("reply"), None)
        if fut is None or fut.done():
            return
        if msg.get("ok"):
            fut.set_result(msg.get("result") or {})
        else:
            fut.set_exception(CommandError(msg.get("error", "command failed")))

    async def request(self, cmd: str, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        if self.closed.is_set():
            raise SeatUnavailable(f"seat {self.name} is not running")
        request_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        message = protocol.command(request_id, cmd, {k: v for k, v in args.items() if v is not None})

        async def send_and_wait() -> dict[str, Any]:
            self._writer.write(message)
            await self._writer.drain()  # inside the timeout: a seat that stops reading must not hang us
            return await fut

        try:
            return await asyncio.wait_for(send_and_wait(), timeout or self.command_timeout)
        except (ConnectionError, BrokenPipeError) as e:
            raise SeatUnavailable(f"seat {self.name}: {e}") from None
        except TimeoutError:
            raise SeatTimeout(f"seat {self.name} did not answer {cmd} within {timeout or self.command_timeout}s") \
                from None
        finally:
            self._pending.pop(request_id, None)

    async def dial(self, to_uri: str, *, call_id: str | UUID | None = None, ring_timeout: float | None = None,
                   play: str | None = None, announce: str | None = None) -> str:
        """Place a call; `announce` is a WAV played to the customer at answer ("this call is recorded")."""
        call_id = str(call_id) if call_id else None
        result = await self.request("dial", to_uri=to_uri, call_id=call_id, ring_timeout=ring_timeout, play=play,
                                    announce=announce)
        return result["call_id"]

    async def answer(self, call_id: str | UUID, *, announce: str | None = None) -> None:
        await self.request("answer", call_id=str(call_id), announce=announce)

    async def queue_play(self, call_id: str | UUID, files: list[str]) -> None:
        """A waiting caller hears these WAVs in a loop (hold music, announcements) instead of an agent."""
        await self.request("queue_play", call_id=str(call_id), files=[str(f) for f in files])

    async def queue_connect(self, call_id: str | UUID) -> None:
        """End the queue's playback: the call is wired to the agent side like any call of the seat."""
        await self.request("queue_connect", call_id=str(call_id))

    async def headset_connect(self, uri: str, *, ring_timeout: float | None = None) -> str:
        """Call the agent's own phone and keep the leg up; customer calls are bridged to it (HeadsetState events)."""
        result = await self.request("headset_connect", uri=uri, ring_timeout=ring_timeout)
        return result["call_id"]

    async def headset_disconnect(self) -> None:
        await self.request("headset_disconnect")

    async def abandon(self, call_id: str | UUID, message: str) -> float:
        """Play `message` (a WAV) to the answered customer, then the seat hangs up; returns its seconds."""
        return (await self.request("abandon", call_id=str(call_id), message=message))["seconds"]

    async def hangup(self, call_id: str | UUID) -> None:
        await self.request("hangup", call_id=str(call_id))

    async def hold(self, call_id: str | UUID) -> None:
        await self.request("hold", call_id=str(call_id))

    async def unhold(self, call_id: str | UUID) -> None:
        await self.request("unhold", call_id=str(call_id))

    async def mute(self, call_id: str | UUID) -> None:
        await self.request("mute", call_id=str(call_id))

    async def unmute(self, call_id: str | UUID) -> None:
        await self.request("unmute", call_id=str(call_id))

    async def send_dtmf(self, call_id: str | UUID, digits: str) -> None:
        await self.request("send_dtmf", call_id=str(call_id), digits=digits)

    async def transfer(self, call_id: str | UUID, target: str) -> None:
        await self.request("transfer", call_id=str(call_id), target=target)

    async def consult(self, call_id: str | UUID, to_uri: str, *, consult_call_id: str | UUID | None = None,
                      ring_timeout: float | None = None, play: str | None = None) -> str:
        """Hold call_id and dial to_uri on a second leg; returns the consult leg's call id."""
        consult_call_id = str(consult_call_id) if consult_call_id else None
        result = await self.request("consult", call_id=str(call_id), to_uri=to_uri, consult_call_id=consult_call_id,
                                    ring_timeout=ring_timeout, play=play)
        return result["call_id"]

    async def complete_transfer(self, call_id: str | UUID) -> None:
        """Hand the customer on call_id to the consult leg's far end (REFER with Replaces)."""
        await self.request("complete_transfer", call_id=str(call_id))

    async def cancel_consult(self, call_id: str | UUID) -> None:
        """Hang up the consult leg and take the customer off hold."""
        await self.request("cancel_consult", call_id=str(call_id))

    # --- media taps (telephony.taps) ------------------------------------------------------

    async def open_tap(self, call_id: str | UUID) -> MediaTap:
        """Stream the live audio of an answered call, both directions; see telephony.taps."""
        if self._media is None:
            raise SeatUnavailable(f"seat {self.name} has no media link")
        tap_id = self._free_tap_id()
        tap = MediaTap(self, tap_id, str(call_id))
        self._taps[tap_id] = tap  # before the command: frames may arrive before its reply
        try:
            await self.request("open_tap", call_id=str(call_id), tap=tap_id)
        except BaseException:
            self._taps.pop(tap_id, None)
            raise
        return tap

    def _free_tap_id(self) -> int:
        while True:
            tap_id = next(self._tap_ids) % (media_link.MAX_TAP_ID + 1)
            if tap_id not in self._taps:
                return tap_id

    async def _close_tap(self, tap: MediaTap) -> None:
        self._taps.pop(tap.tap_id, None)
        if not self.closed.is_set():
            try:
                await self.request("close_tap", tap=tap.tap_id)
            except SeatUnavailable:
                pass

    async def _send_media(self, tap_id: int, kind: int, pcm: bytes) -> None:
        writer = self._media[1]
        try:
            writer.write(media_link.pack(tap_id, kind, pcm))
            # A seat that stops reading (hung) must not hold up whoever injects; the heartbeat deals with it.
            await asyncio.wait_for(writer.drain(), self.command_timeout)
        except (ConnectionError, BrokenPipeError) as e:
            raise SeatUnavailable(f"seat {self.name} media link: {e}") from None
        except TimeoutError:
            raise SeatTimeout(f"seat {self.name} is not taking injected audio") from None

    async def _read_media(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                tap_id, kind, pcm = media_link.unpack(await reader.readexactly(media_link.MESSAGE_BYTES))
                tap = self._taps.get(tap_id)
                if tap is None:
                    continue
                if kind == media_link.KIND_END:
                    self._taps.pop(tap_id, None)
                    tap._deliver(None)
                elif kind in media_link.DIRECTIONS:
                    tap._deliver(TapFrame(media_link.DIRECTIONS[kind], pcm))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            if not isinstance(e, asyncio.IncompleteReadError):
                log.error("seat %s media link: %s", self.name, e)
        finally:
            for tap in self._taps.values():
                tap._deliver(None)
            self._taps.clear()

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def events(self) -> AsyncIterator[ev.Event]:
        """Every event from this seat process, until its socket closes."""
        while (event := await self._events.get()) is not None:
            yield event

    async def aclose(self) -> None:
        for writer in (self._writer, self._media[1] if self._media else None):
            if writer is None:
                continue
            writer.close()
            # Bounded: a peer that stopped reading would otherwise keep unsent bytes (and us) waiting.
            with contextlib.suppress(ConnectionError, BrokenPipeError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)
        for task in (self._task, self._media_task):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


__all__ = ["SeatClient", "SeatUnavailable", "SeatTimeout", "CommandError"]
