"""The service side of one seat socket: commands as awaitable calls, events as an async stream.

The reader task resolves reply futures and queues events; a command that gets
no reply within its timeout raises SeatTimeout (the seat may be stuck or dead).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from telephony import events as ev
from telephony import protocol
from telephony.protocol import CommandError

log = logging.getLogger("telephony.client")


class SeatUnavailable(Exception):
    """The seat process is not running (crashed, restarting or stopped)."""


class SeatTimeout(SeatUnavailable):
    """The seat did not answer a command in time."""


class SeatClient:
    def __init__(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command_timeout: float = 5.0
    ) -> None:
        self.name = name
        self.command_timeout = command_timeout
        self._reader, self._writer = reader, writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._events: asyncio.Queue[ev.Event | None] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read(), name=f"seat-{name}-reader")

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
        try:
            self._writer.write(protocol.command(request_id, cmd, {k: v for k, v in args.items() if v is not None}))
            await self._writer.drain()
            return await asyncio.wait_for(fut, timeout or self.command_timeout)
        except (ConnectionError, BrokenPipeError) as e:
            raise SeatUnavailable(f"seat {self.name}: {e}") from None
        except TimeoutError:
            raise SeatTimeout(f"seat {self.name} did not answer {cmd} within {timeout or self.command_timeout}s") \
                from None
        finally:
            self._pending.pop(request_id, None)

    async def dial(self, to_uri: str, *, call_id: str | UUID | None = None, ring_timeout: float | None = None,
                   play: str | None = None) -> str:
        call_id = str(call_id) if call_id else None
        result = await self.request("dial", to_uri=to_uri, call_id=call_id, ring_timeout=ring_timeout, play=play)
        return result["call_id"]

    async def answer(self, call_id: str | UUID) -> None:
        await self.request("answer", call_id=str(call_id))

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

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def events(self) -> AsyncIterator[ev.Event]:
        """Every event from this seat process, until its socket closes."""
        while (event := await self._events.get()) is not None:
            yield event

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, BrokenPipeError):
            pass
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


__all__ = ["SeatClient", "SeatUnavailable", "SeatTimeout", "CommandError"]
