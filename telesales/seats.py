"""The service side of telephony: builds the seats from settings and writes call rows from their events.

telephony/ knows nothing of the store; this module is the one place that turns
seat events into crm.calls updates, in arrival order, on one task it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg

from crm import calls as call_store
from crm import qa_jobs
from crm.errors import Conflict, NotFound
from telephony import events as ev
from telephony.client import SeatUnavailable
from telephony.config import AccountConfig, SeatConfig
from telephony.line_test import LineTestResult, run_line_test
from telephony.manager import SeatManager
from telephony.protocol import CommandError
from telephony.recording import repair_wav, sha256_file
from telesales.claims import SeatClaim, SeatClaims
from telesales.settings import SettingsError, coerce

log = logging.getLogger("telesales.seats")


def seat_configs(settings: SimpleNamespace) -> list[SeatConfig]:
    """One SeatConfig per seat from settings.telephony; a bad value raises SettingsError naming the key."""
    t = settings.telephony
    if t.seats < 0:
        raise SettingsError("telephony.seats: must be 0 or more")
    for key in ("sip_base_port", "rtp_base_port"):
        if not 0 <= getattr(t, key) <= 65535:
            raise SettingsError(f"telephony.{key}: must be a port number")
    names = [f"seat{n + 1}" for n in range(t.seats)]
    per_seat = _per_seat_values(t, names)
    try:
        return [_seat_config(settings, n, name, per_seat.get(name, {})) for n, name in enumerate(names)]
    except ValueError as e:
        raise SettingsError(str(e)) from None


# What a seat may set for itself in [telephony.per_seat.<seat>]; everything else is shared.
PER_SEAT_KEYS = ("registrar", "username", "password", "realm", "outbound_proxy", "transport",
                 "public_address", "codecs", "allowed_peers", "inbound_numbers")


def _per_seat_values(t: SimpleNamespace, names: list[str]) -> dict[str, dict]:
    """telephony.per_seat checked: known seats, known keys, each value of the shared setting's type."""
    result = {}
    for seat, table in vars(t.per_seat).items():
        where = f"telephony.per_seat.{seat}"
        if seat not in names:
            raise SettingsError(f"{where}: no such seat; the seats are {', '.join(names) or 'none'}")
        if not isinstance(table, SimpleNamespace):
            raise SettingsError(f"{where}: expected a table")
        values = {}
        for key, value in vars(table).items():
            if key not in PER_SEAT_KEYS:
                raise SettingsError(f"{where}.{key}: not a per-seat setting; use one of {', '.join(PER_SEAT_KEYS)}")
            values[key] = coerce(f"{where}.{key}", getattr(t, key), value, "config file")
        result[seat] = values
    return result


def _seat_config(settings: SimpleNamespace, n: int, name: str, own: dict) -> SeatConfig:
    t = settings.telephony

    def value(key: str):
        return own.get(key, getattr(t, key))

    return SeatConfig(
        name=name,
        sip_port=t.sip_base_port + n,
        recordings_dir=str(Path(settings.data_dir) / "recordings"),
        bind_address=t.bind_address,
        public_address=value("public_address"),
        transport=value("transport"),
        stun_servers=tuple(t.stun_servers),
        account=AccountConfig(value("registrar"), value("username"), value("password"), value("realm"),
                              value("outbound_proxy")),
        codecs=tuple(value("codecs")),
        allowed_peers=tuple(value("allowed_peers")),
        inbound_numbers=tuple(value("inbound_numbers")),
        rtp_port=t.rtp_base_port + n * t.rtp_ports_per_seat if t.rtp_base_port else 0,
        rtp_port_range=t.rtp_ports_per_seat if t.rtp_base_port else 0,
        ring_timeout_seconds=t.ring_timeout_seconds,
        pjsip_log_level=t.pjsip_log_level,
    )


def _at(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class SeatService:
    def __init__(self, manager: SeatManager, pool: asyncpg.Pool, data_dir: Path, *,
                 qa_scorecard: str | None = None) -> None:
        self.manager = manager
        self.pool = pool
        self.data_dir = Path(data_dir)
        # Scorecard for QA jobs of calls whose campaign names none; None: this service queues no QA jobs.
        self.qa_scorecard = qa_scorecard
        self._task: asyncio.Task | None = None
        # Which seat is held for which call (telesales/claims.py); desk, dialer and queue claim through it.
        self.claims = SeatClaims(manager.names)
        # Called with each event after its row is written, in event order (the predictive dialer follows
        # answers, the inbound queue its calls); a coroutine listener is awaited, so keep it short.
        self.listeners: list[Callable[[ev.Event], Any]] = [self.claims.on_event]
        # agent id -> that agent's live browser headset (telesales/browser_headset.py): one per agent.
        self.browser_headsets: dict[int, Any] = {}

    @contextlib.contextmanager
    def watch_calls(self):
        """A queue that gets each call id just answered or ended, after its row is written (drop-oldest, 100)."""
        queue: asyncio.Queue = asyncio.Queue(100)

        def on_event(event: ev.Event) -> None:
            if isinstance(event, (ev.CallAnswered, ev.CallEnded)):
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(event.call_id)

        self.listeners.append(on_event)
        try:
            yield queue
        finally:
            self.listeners.remove(on_event)

    async def start(self) -> None:
        await self.recover_interrupted_recordings()
        await self.manager.start()
        self._task = asyncio.create_task(self._consume(), name="seat-events")

    async def stop(self) -> None:
        await self.manager.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def dial(self, seat: str, to_uri: str, *, agent_id: int | None = None, lead_id: int | None = None,
                   customer_id: int | None = None, campaign_id: int | None = None, to_number: str | None = None,
                   ring_timeout: float | None = None, claim: SeatClaim | None = None) -> uuid.UUID:
        """Write the call row, then place the call under the row's id (which also names the recording).
        claim: the seat's claim, tied to the call before it is placed (so its end always lets the seat go)."""
        self.manager.seat(seat)  # SeatUnavailable before any row is written
        async with self.pool.acquire() as conn:
            row = await call_store.create_call(
                conn, direction="outbound", agent_id=agent_id, lead_id=lead_id, customer_id=customer_id,
                campaign_id=campaign_id, to_number=to_number, seat=seat,
            )
        if claim is not None:
            self.claims.attach(claim, row["id"])
        await self.place(seat, row["id"], to_uri, ring_timeout=ring_timeout)
        return row["id"]

    async def place(self, seat: str, call_id: uuid.UUID, to_uri: str, *, ring_timeout: float | None = None) -> None:
        """Place the call of a row written already; a refused dial closes the row (dial_failed) and re-raises."""
        try:
            await self.manager.seat(seat).dial(to_uri, call_id=str(call_id), ring_timeout=ring_timeout)
        except (CommandError, SeatUnavailable):
            async with self.pool.acquire() as conn:
                await call_store.end_call(conn, call_id, hangup_side="system", hangup_cause="dial_failed")
            raise

    # --- events -> rows ----------------------------------------------------------

    async def _consume(self) -> None:
        async for event in self.manager.events():
            log.info(type(event).__name__, extra={"seat": event.seat, "call_id": getattr(event, "call_id", None)})
            try:
                await self.apply(event)
            except (NotFound, Conflict) as e:
                # A call placed without the service (line test) or already closed: nothing to write.
                log.info("seat event without an open call row: %s", e, extra={"seat": event.seat})
            except Exception:  # noqa: BLE001 - one bad event must not stop the call records
                log.exception("cannot apply seat event %s", type(event).__name__, extra={"seat": event.seat})
            for listener in list(self.listeners):
                try:
                    result = listener(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # noqa: BLE001 - nor one listener's bug
                    log.exception("seat event listener failed on %s", type(event).__name__,
                                  extra={"seat": event.seat})

    async def apply(self, event: ev.Event) -> None:
        async with self.pool.acquire() as conn:
            match event:
                case ev.CallStarted(direction="outbound"):
                    await call_store.mark_call_progress(conn, event.call_id, sip_call_id=event.sip_call_id)
                case ev.CallRinging():
                    await call_store.mark_call_progress(conn, event.call_id, ringing_at=_at(event.ts))
                case ev.CallAnswered():
                    await call_store.mark_call_progress(conn, event.call_id, answered_at=_at(event.ts))
                case ev.RecordingStarted():
                    await call_store.set_recording(conn, event.call_id, state="recording",
                                                   path=self._stored_path(event.path))
                case ev.RecordingClosed():
                    await self._recording_closed(conn, event.call_id, event.state, event.sha256)
                case ev.CallEnded():
                    await call_store.end_call(conn, event.call_id, ended_at=_at(event.ts), sip_code=event.sip_code,
                                              hangup_side=event.side, hangup_cause=event.cause)
                case ev.SeatCrashed():
                    await self._seat_crashed(conn, event)
                case ev.IncomingRejected():
                    log.warning("inbound call refused", extra={"seat": event.seat, "source": event.source,
                                                               "sip_code": event.sip_code})

    async def _seat_crashed(self, conn: asyncpg.Connection, event: ev.SeatCrashed) -> None:
        """Close the seat's calls first (the 1 s promise), then repair their recordings."""
        for call_id in event.call_ids:
            with contextlib.suppress(NotFound, Conflict):
                await call_store.end_call(conn, call_id, ended_at=_at(event.ts), hangup_side="system",
                                          hangup_cause="seat_crashed")
        for call_id in event.call_ids:
            with contextlib.suppress(NotFound):
                row = await call_store.get_call(conn, call_id)
                if row["recording_state"] == "recording":
                    await self._repair(conn, row)

    async def recover_interrupted_recordings(self) -> None:
        """After a crash of the service: repair recordings still marked open and close their calls."""
        async with self.pool.acquire() as conn:
            for row in await call_store.calls_recording(conn):
                if row["ended_at"] is None:
                    await call_store.end_call(conn, row["id"], hangup_side="system", hangup_cause="service_restart")
                await self._repair(conn, row)

    async def _repair(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        path = self._disk_path(row["recording_path"]) if row["recording_path"] else None
        if path is None or not path.exists():
            await call_store.set_recording(conn, row["id"], state="failed_storage")
            return
        kept = await asyncio.to_thread(repair_wav, path)
        digest = await asyncio.to_thread(sha256_file, path)
        await self._recording_closed(conn, row["id"], "repaired", digest)
        log.warning("recording repaired", extra={"call_id": str(row["id"]), "seconds_kept": round(kept, 3)})

    async def _recording_closed(self, conn: asyncpg.Connection, call_id, state: str, sha256: str | None) -> None:
        """Close the recording on the call row and, when the wrap-up is in already, queue the QA job: one
        transaction, so a crash between the two cannot leave a closed, dispositioned call with no job."""
        async with conn.transaction():
            await call_store.set_recording(conn, call_id, state=state, sha256=sha256)
            if self.qa_scorecard is not None:
                job_id = await qa_jobs.enqueue_when_ready(conn, call_id, self.qa_scorecard)
                if job_id is not None:
                    log.info("qa job queued", extra={"call_id": str(call_id), "job_id": job_id})

    def _stored_path(self, path: str) -> str:
        """Relative to the data folder when inside it, so the folder can move."""
        try:
            return str(Path(path).relative_to(self.data_dir))
        except ValueError:
            return path

    def _disk_path(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.data_dir / path


async def line_test(settings: SimpleNamespace, target: str, **options) -> LineTestResult:
    """`telesales call TARGET`: one call through a seat built from the telephony settings, no service needed."""
    configs = seat_configs(_with_one_seat(settings))
    return await run_line_test(configs[0], target, **options)


def _with_one_seat(settings: SimpleNamespace) -> SimpleNamespace:
    telephony = SimpleNamespace(**{**vars(settings.telephony), "seats": 1})
    return SimpleNamespace(**{**vars(settings), "telephony": telephony})
