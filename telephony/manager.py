"""Starts one process per seat, watches them, restarts a seat that dies.

A dead seat is seen at once: its socket hits EOF when the kernel closes the
process's descriptors, and the process's exit is awaited too (whichever
comes first). A seat that hangs without exiting (SIGSTOP, a pjsua2 call
blocking its one thread) is found by a heartbeat: once the seat has reported
SeatReady the manager pings it every `ping_interval` seconds, and a ping
unanswered after `ping_deadline`, and a second one unanswered after
`ping_confirm`, gets the process SIGKILLed, which then goes the dead-seat way.
The second ping is there because a blocked event loop in the service (a long
synchronous call) leaves a healthy seat's reply unread past the first deadline. No ping is sent before SeatReady: libCreate/libStart can
take many seconds on a loaded machine, and `start_timeout` covers start-up.
The calls a dead seat held are reported in a SeatCrashed event (with the
recordings that were open, so the service can repair them) and the seat is
started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from telephony import events as ev
from telephony.client import SeatClient, SeatTimeout, SeatUnavailable
from telephony.config import SeatConfig

log = logging.getLogger("telephony.manager")


class SeatStartError(Exception):
    """A seat process exited or stayed silent before it was ready."""


@dataclass
class _Seat:
    cfg: SeatConfig
    proc: asyncio.subprocess.Process | None = None
    client: SeatClient | None = None
    calls: dict[str, str | None] = field(default_factory=dict)  # call id -> open recording path
    restarts: int = 0


class SeatManager:
    # The seat process's command line (before --fd/--config); bench/concurrent_calls.py swaps in a variant.
    seat_command: tuple[str, ...] = (sys.executable, "-m", "telephony.seat")

    def __init__(
        self,
        configs: list[SeatConfig],
        *,
        start_timeout: float = 60.0,
        command_timeout: float = 5.0,
        restart_delay: float = 0.2,
        ping_interval: float = 1.0,
        ping_deadline: float = 5.0,
        ping_confirm: float = 1.0,
    ) -> None:
        # A dead process is seen within ~10 ms by EOF; the heartbeat is only for a seat that hangs while alive,
        # which is rare, so its deadline is generous: killing a seat by mistake drops every live call on it,
        # and on a loaded host (CPU hogs, swapping, a GC pause, a slow pjsua2 call) a healthy seat can miss a
        # sub-second deadline. A hang is seen within ping_interval + ping_deadline + ping_confirm (7 s by default).
        self._seats = {cfg.name: _Seat(cfg) for cfg in configs}
        self.start_timeout = start_timeout
        self.command_timeout = command_timeout
        self.restart_delay = restart_delay
        self.ping_interval = ping_interval
        self.ping_deadline = ping_deadline
        self.ping_confirm = ping_confirm
        self._events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self._watchers: list[asyncio.Task] = []
        self._stopping = False

    # --- public --------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(seat) for seat in self._seats.values()))
        self._watchers = [
            asyncio.create_task(self._watch(seat), name=f"seat-{name}-watch") for name, seat in self._seats.items()
        ]

    def seat(self, name: str) -> SeatClient:
        """The client of a running seat; SeatUnavailable while it is down or restarting."""
        seat = self._seats.get(name)
        if seat is None:
            raise SeatUnavailable(f"no seat named {name!r}")
        if seat.client is None or seat.client.closed.is_set():
            raise SeatUnavailable(f"seat {name} is restarting")
        return seat.client

    @property
    def names(self) -> list[str]:
        """The seats' names, in the order they were configured."""
        return list(self._seats)

    def pid(self, name: str) -> int | None:
        proc = self._seats[name].proc
        return proc.pid if proc else None

    def restarts(self, name: str) -> int:
        return self._seats[name].restarts

    async def events(self) -> AsyncIterator[ev.Event]:
        """All seats' events in arrival order, plus SeatCrashed from the manager.

        One consumer (the service's seat task): two readers would split the events between them.
        """
        while True:
            yield await self._events.get()

    async def stop(self) -> None:
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(self._stop_seat(seat) for seat in self._seats.values()))

    # --- processes -------------------------------------------------------------

    async def _spawn(self, seat: _Seat) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        media_parent, media_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            seat.proc = await asyncio.create_subprocess_exec(
                *self.seat_command, "--fd", str(child.fileno()),
                "--media-fd", str(media_child.fileno()), "--config", seat.cfg.to_json(),
                pass_fds=[child.fileno(), media_child.fileno()], stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
            media_child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        media = await asyncio.open_unix_connection(sock=media_parent)
        seat.client = SeatClient(seat.cfg.name, reader, writer, self.command_timeout, media=media)
        seat.calls.clear()
        try:
            await asyncio.wait_for(self._until_ready(seat), self.start_timeout)
        except TimeoutError:
            await self._stop_seat(seat)
            raise SeatStartError(f"seat {seat.cfg.name} not ready within {self.start_timeout}s") from None

    async def _until_ready(self, seat: _Seat) -> None:
        """Consume events up to SeatReady; the forwarder takes over from there."""
        stream = seat.client.events()
        async for event in stream:
            self._track(seat, event)
            self._events.put_nowait(event)
            if isinstance(event, ev.SeatReady):
                return
        code = await seat.proc.wait()
        raise SeatStartError(f"seat {seat.cfg.name} exited with {code} before it was ready")

    async def _watch(self, seat: _Seat) -> None:
        # Entered only after _spawn saw SeatReady, so a seat is never pinged (or killed) while it starts.
        while not self._stopping:
            heartbeat = asyncio.create_task(self._heartbeat(seat), name=f"seat-{seat.cfg.name}-heartbeat")
            try:
                await self._forward(seat)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            if self._stopping:
                return
            await self._crashed(seat)
            await self._restart(seat)

    async def _forward(self, seat: _Seat) -> None:
        async for event in seat.client.events():
            self._track(seat, event)
            self._events.put_nowait(event)

    async def _heartbeat(self, seat: _Seat) -> None:
        """Ping the seat; one that misses the deadline is hung: SIGKILL it so its socket hits EOF."""
        client, proc = seat.client, seat.proc
        while not client.closed.is_set():
            await asyncio.sleep(self.ping_interval)
            try:
                if await self._answers(client, self.ping_deadline) or await self._answers(client, self.ping_confirm):
                    continue
            except SeatUnavailable:
                return
            log.error("seat %s missed two pings (%.2fs, %.2fs): killing it", seat.cfg.name, self.ping_deadline,
                      self.ping_confirm)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            return

    @staticmethod
    async def _answers(client: SeatClient, deadline: float) -> bool:
        try:
            await client.request("ping", timeout=deadline)
            return True
        except SeatTimeout:
            return False

    def _track(self, seat: _Seat, event: ev.Event) -> None:
        if isinstance(event, ev.CallStarted):
            seat.calls[event.call_id] = None
        elif isinstance(event, ev.RecordingStarted) and event.call_id in seat.calls:
            seat.calls[event.call_id] = event.path
        elif isinstance(event, ev.RecordingClosed) and event.call_id in seat.calls:
            seat.calls[event.call_id] = None
        elif isinstance(event, ev.CallEnded):
            seat.calls.pop(event.call_id, None)

    async def _crashed(self, seat: _Seat) -> None:
        """The socket closed: report the calls it held, then make sure the process is gone."""
        calls = dict(seat.calls)
        seat.calls.clear()
        with contextlib.suppress(TimeoutError):
            # EOF usually comes with the exit; wait briefly only to report the exit code.
            await asyncio.wait_for(seat.proc.wait(), 0.3)
        code = seat.proc.returncode
        log.error("seat %s died (exit %s) with %d call(s) up", seat.cfg.name, code, len(calls))
        self._events.put_nowait(ev.SeatCrashed(
            seat.cfg.name, tuple(calls), code, tuple(path for path in calls.values() if path),
        ))
        await self._stop_seat(seat)

    async def _restart(self, seat: _Seat) -> None:
        delay = self.restart_delay
        while not self._stopping:
            await asyncio.sleep(delay)
            try:
                await self._spawn(seat)
                seat.restarts += 1
                return
            except (SeatStartError, OSError) as e:
                log.error("seat %s restart failed: %s", seat.cfg.name, e)
                delay = min(delay * 2, 5.0)

    async def _stop_seat(self, seat: _Seat) -> None:
        """Ask politely (shutdown hangs up and closes recordings), then SIGKILL after a grace period."""
        proc, client = seat.proc, seat.client
        if client is not None and not client.closed.is_set():
            with contextlib.suppress(SeatUnavailable, SeatTimeout):  # a stuck seat is killed below
                await client.request("shutdown", timeout=2.0)
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        if client is not None:
            await client.aclose()
