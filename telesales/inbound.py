"""The inbound queue: calls to the service lines wait for the longest-idle ready agent with the skill.

How a call flows (one asyncio task and the seat-event listener, both in the service):
1. An allowed peer's INVITE rings a seat; its CallStarted (inbound) reaches `on_event`. The caller's
   number (From user) is normalised and matched to a customer (the screen pop), a call row is written
   with its queue (the called line) and the seat answers it at once with the queue's playlist: the
   caller's position, then hold music, in a loop.
2. Every `route_interval_seconds` (and at once on arrival), waiting calls are taken oldest first and
   each goes to the ready agent with the line's skill who has been ready longest (their open
   `agent_status_log` stretch started earliest) and has no open call and no wrap-up owed. The agent
   is set on_call and the call row gets its agent in one transaction; then the seat stops the music.
3. A caller still waiting after `callback_after_seconds` hears the callback offer; pressing 1
   (RFC 2833) creates an open follow-up (a callback any agent may take) for the matched customer,
   or for a new customer holding the caller's number, and the call ends after a confirmation.
4. A caller who hangs up while waiting leaves the queue as `abandoned`.

Where the audio goes (the seat-process model: a seat is a pjsua2 process of at most 4 calls, and
agents are not tied to seats): a queued call WAITS ON THE SEAT THAT ANSWERED IT and is never moved.
Taking it means the seat stops the queue's player and wires the call like an agent's own call of
that seat: its media taps (the browser headset and supervisor listen-in attach per call with
`open_tap`, so any agent can be attached to any seat's call) and, where that seat has a headset leg,
that leg. Limits: a seat's headset leg is one phone, so an agent on a SIP desk phone only hears a
queued call that waits on the seat their phone is connected to (route those agents through the
browser tap); a queue holds at most 4 callers per seat (the carrier or PBX hunts to the next seat
on 486); the queue lives in this service process (a restart ends the waiting calls: the seats
are restarted with it). A waiting caller does not hold their seat (telesales/claims.py): the desk and
the dialer may dial from it (seats with no waiting caller are picked first). Taking a caller claims the
agent only: the caller is already on the seat, and one seat bridges several callers to their agents at
once, so a connected caller never makes the next one on that seat wait (first come, first served).

Blended agents: an agent who is ready in a preview, progressive or predictive campaign is a
candidate too, and inbound takes precedence: the router claims them before the outbound dialers
(the progressive dialer asks `wants_agent` before dialling for an agent) and the call carries no
campaign. Their campaign stays on their status, so after the wrap-up they are back in it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import asyncpg

from crm import agent_status, follow_ups
from crm import customers as customer_store
from crm.errors import UserError
from telephony import events as ev
from telephony.client import SeatUnavailable
from telephony.protocol import CommandError
from telesales import claims
from telesales.inbound_audio import QueueAudio, wav_seconds
from telesales.settings import SettingsError

log = logging.getLogger("telesales.inbound")

DEFAULT_QUEUE = "default"
SPEECH_SLACK_S = 0.5
PREPARED_POSITIONS = 8  # announcements made at start; later positions are made on first use

# Ready agents with the skill, longest ready first; none on a call or owing a wrap-up.
_READY_AGENTS = """
select u.id, s.campaign_id, s.started_at
from agent_status_log s
join users u on u.id = s.user_id and u.active
where s.ended_at is null and s.status = 'ready'
  and ($1::text is null or $1 = any(u.skills))
  and not (u.id = any($2::bigint[]))
  and not exists (select 1 from calls k where k.agent_id = u.id and k.ended_at is null)
  and not exists (select 1 from calls k where k.agent_id = u.id and k.disposition is null
                  and not exists (select 1 from call_dispositions d where d.call_id = k.id))
order by s.started_at, u.id
"""


@dataclass(frozen=True)
class InboundConfig:
    lines: dict[str, str | None]  # called number -> skill needed (None: any agent)
    announce_every_seconds: float
    callback_after_seconds: float
    callback_due_minutes: int
    hold_music: str
    route_interval_seconds: float
    folder: Path
    default_region: str


def inbound_config(settings: SimpleNamespace) -> InboundConfig:
    """From settings.inbound; a bad value raises SettingsError naming the key."""
    s = settings.inbound
    lines: dict[str, str | None] = {}
    for item in s.lines:
        number, sep, skill = item.partition("=")
        if not sep or not number.strip():
            raise SettingsError(f'inbound.lines: {item!r} must be "NUMBER=SKILL" (or "NUMBER=" for no skill)')
        lines[number.strip()] = skill.strip() or None
    if s.announce_every_seconds < 1:
        raise SettingsError("inbound.announce_every_seconds: must be at least 1")
    if s.callback_after_seconds < 0:
        raise SettingsError("inbound.callback_after_seconds: must be 0 (never) or more")
    if s.callback_due_minutes < 0:
        raise SettingsError("inbound.callback_due_minutes: must be 0 or more")
    if s.route_interval_seconds <= 0:
        raise SettingsError("inbound.route_interval_seconds: must be positive")
    if s.hold_music:
        _check_music(s.hold_music)
    return InboundConfig(lines, s.announce_every_seconds, s.callback_after_seconds, s.callback_due_minutes,
                         s.hold_music, s.route_interval_seconds, Path(settings.data_dir) / "inbound",
                         settings.crm.default_region)


def _check_music(path: str) -> None:
    import wave

    try:
        with wave.open(path) as w:
            ok = (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000) and w.getnframes() > 0
    except (OSError, EOFError, wave.Error) as e:
        raise SettingsError(f"inbound.hold_music: cannot read {path!r}: {e}") from None
    if not ok:
        raise SettingsError(f"inbound.hold_music: {path!r} must be a 16 kHz mono 16-bit WAV")


def sip_user(uri: str) -> str:
    """The user part of a SIP URI or name-addr: '"Bob" <sip:+8613800000001@10.0.0.1:5060>' -> '+8613800000001'."""
    inner = uri.split("<", 1)[1].split(">", 1)[0] if "<" in uri else uri
    inner = inner.split(":", 1)[1] if inner.startswith(("sip:", "sips:", "tel:")) else inner
    return inner.split("@", 1)[0].split(";", 1)[0] if "@" in inner or inner.startswith("+") else ""


@dataclass
class Waiting:
    """A caller in a queue, as this process sees it."""

    call_id: str
    seat: str
    queue: str
    skill: str | None
    caller: str  # E.164 where the number could be read, else what the From header said
    customer_id: int | None
    since: float = field(default_factory=time.monotonic)
    position: int = 0  # the position last announced
    offered: bool = False
    # The playlist now playing: when it started and how long its spoken part (all but the music) lasts,
    # and the next one, held back until that speech is over (a prompt is never cut off mid-sentence).
    playing_since: float = 0.0
    speech_s: float = 0.0
    cycle_s: float = 1.0
    pending: list[Path] | None = None

    def speaking(self, now: float) -> bool:
        return (now - self.playing_since) % self.cycle_s < self.speech_s


class InboundQueue:
    def __init__(self, cfg: InboundConfig, pool: asyncpg.Pool, seats) -> None:
        self.cfg = cfg
        self.pool = pool
        self.seats = seats  # telesales.seats.SeatService
        self.audio = QueueAudio(cfg.folder, cfg.announce_every_seconds, cfg.hold_music)
        self.waiting: list[Waiting] = []
        self._route_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- life ------------------------------------------------------------------------

    async def start(self) -> None:
        # The WAVs are made in the background (a few espeak-ng runs): start-up does not wait, and a caller
        # who comes first waits for the file they need (QueueAudio's lock).
        self._spawn(self.audio.prepare(PREPARED_POSITIONS))
        self.seats.listeners.append(self.on_event)
        # Seats with callers waiting are dialled from last; a seat let go may be one a caller waits on.
        self.seats.claims.waiting = self.waiting_per_seat
        self.seats.claims.on_release.append(self._seat_released)
        self._task = asyncio.create_task(self._run(), name="inbound-queue")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.seats.listeners.remove(self.on_event)
        with contextlib.suppress(ValueError):
            self.seats.claims.on_release.remove(self._seat_released)
        self.seats.claims.waiting = dict
        for task in [self._task, *list(self._tasks)]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.cfg.route_interval_seconds)
            self._kick.clear()
            try:
                await self.route()
                await self._offer_callbacks()
                await self._flush_pending()
            except Exception:  # noqa: BLE001 - one bad round must not stop the queue
                log.exception("inbound routing round failed")

    # --- what others read ------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict]:
        """Queue name -> {"waiting": callers, "longest_wait_seconds": the oldest caller's wait}; every
        configured line's queue appears, empty ones with zeros. In-process, no database: cheap to poll."""
        now = time.monotonic()
        out = {q: {"waiting": 0, "longest_wait_seconds": 0.0} for q in [*self.cfg.lines, DEFAULT_QUEUE]}
        for w in self.waiting:
            q = out.setdefault(w.queue, {"waiting": 0, "longest_wait_seconds": 0.0})
            q["waiting"] += 1
            q["longest_wait_seconds"] = max(q["longest_wait_seconds"], round(now - w.since, 1))
        return out

    def waiting_per_seat(self) -> dict[str, int]:
        """Seat -> callers waiting on it (not yet with an agent: they do not hold the seat)."""
        return dict(collections.Counter(w.seat for w in self.waiting))

    def _seat_released(self, seat: str) -> None:
        if any(w.seat == seat for w in self.waiting):
            self._kick.set()  # a caller who waited for their seat can be taken now

    async def wants_agent(self, agent_id: int) -> bool:
        """True while a caller waits whom this agent could take: outbound dialers leave them to the queue."""
        if not self.waiting:
            return False
        skills = await self.pool.fetchval("select skills from users where id = $1", agent_id) or []
        return any(w.skill is None or w.skill in skills for w in self.waiting)

    # --- seat events (called by SeatService in event order) ------------------------------------

    async def on_event(self, event: ev.Event) -> None:
        match event:
            case ev.CallStarted(direction="inbound"):
                await self._admit(event)
            case ev.CallAnswered():
                w = self._find(event.call_id)
                if w is not None:
                    w.playing_since = time.monotonic()  # the first playlist starts with the call's media
            case ev.DtmfReceived():
                w = self._find(event.call_id)
                if w is not None and w.offered and event.digit == "1":
                    await self._callback(w)
            case ev.CallEnded():
                w = self._find(event.call_id)
                if w is not None:
                    await self._leave(w, "abandoned")
            case ev.SeatCrashed():
                for call_id in event.call_ids:
                    w = self._find(call_id)
                    if w is not None:
                        await self._leave(w, "abandoned")

    def _find(self, call_id: str) -> Waiting | None:
        return next((w for w in self.waiting if w.call_id == call_id), None)

    async def _admit(self, event: ev.CallStarted) -> None:
        line = sip_user(event.local_uri)
        queue = line if line in self.cfg.lines else DEFAULT_QUEUE
        raw = sip_user(event.remote_uri)
        try:
            caller = customer_store.normalise_phone(raw, self.cfg.default_region, field="caller")
        except UserError:
            caller = raw  # withheld or not a number: queued all the same, no screen pop
        async with self.pool.acquire() as conn:
            customer = await customer_store.find_by_phone(conn, caller) if caller.startswith("+") else None
            customer_id = None if customer is None else customer["id"]
            await conn.execute(
                """insert into calls (id, direction, seat, customer_id, from_number, to_number, sip_call_id,
                                      queue, queued_at)
                   values ($1, 'inbound', $2, $3, $4, $5, $6, $7, now())""",
                uuid.UUID(event.call_id), event.seat, customer_id, caller or None, line or None,
                event.sip_call_id, queue,
            )
        w = Waiting(event.call_id, event.seat, queue, self.cfg.lines.get(queue), caller, customer_id)
        self.waiting.append(w)
        log.info("inbound call queued", extra={"call_id": w.call_id, "seat": w.seat, "queue": queue,
                                                "caller": caller, "customer_id": customer_id})
        client = self.seats.manager.seat(event.seat)
        try:
            w.position = self._position(w)
            files = [await self.audio.position(w.position), await self.audio.music()]
            await client.queue_play(w.call_id, files)
            self._playing(w, files)
            await client.answer(w.call_id)
        except (CommandError, SeatUnavailable) as e:
            log.warning("cannot answer the inbound call: %s", e, extra={"call_id": w.call_id})
            await self._leave(w, "abandoned")
            return
        self._kick.set()

    def _position(self, w: Waiting) -> int:
        return 1 + sum(1 for o in self.waiting if o.queue == w.queue and o.since < w.since)

    # --- routing ----------------------------------------------------------------------

    async def route(self) -> list[tuple[str, int]]:
        """One round: each waiting call, oldest first, to the longest-ready agent with its skill."""
        placed: list[tuple[str, int]] = []
        async with self._route_lock:
            taken: list[int] = []
            for w in sorted(self.waiting, key=lambda w: w.since):
                agent_id = await self._assign(w, taken)
                if agent_id is not None:
                    taken.append(agent_id)
                    placed.append((w.call_id, agent_id))
            if placed:
                await self._announce_positions()
        return placed

    async def _assign(self, w: Waiting, taken: list[int]) -> int | None:
        if w not in self.waiting:
            return None  # left (hung up, called back) during this round
        async with self.pool.acquire() as conn:
            for agent in await conn.fetch(_READY_AGENTS, w.skill, taken):
                if await self._claim(conn, w, agent["id"]):
                    break
            else:
                return None
        with contextlib.suppress(ValueError):
            self.waiting.remove(w)
        try:
            await self.seats.manager.seat(w.seat).queue_connect(w.call_id)
        except (CommandError, SeatUnavailable) as e:
            # The caller hung up in between: the CallEnded event closes the row; the agent goes to wrap-up.
            log.info("queued call gone before the agent took it: %s", e, extra={"call_id": w.call_id})
        log.info("inbound call to agent", extra={"call_id": w.call_id, "agent_id": agent["id"], "queue": w.queue,
                                                 "waited_s": round(time.monotonic() - w.since, 1)})
        return agent["id"]

    async def _claim(self, conn: asyncpg.Connection, w: Waiting, agent_id: int) -> bool:
        """Agent on_call and the call theirs, in one transaction holding the agent's claim (telesales/claims.py:
        a dialer or the agent's own dial may have taken them since the query). The caller's seat is not
        claimed: the caller is already on it, and one seat bridges several queued callers to their agents
        at once (up to its call limit), so a connected caller must not make the next one on that seat wait."""
        now = dt.datetime.now(dt.UTC)
        async with conn.transaction():
            try:
                status = await claims.claim_agent(conn, agent_id, claims.INBOUND)
            except claims.AgentBusy as e:
                log.info("inbound call skips an agent: %s", e.message, extra={"call_id": w.call_id})
                return False
            updated = await conn.execute(
                """update calls set agent_id = $2, queue_left_at = $3, queue_outcome = 'answered'
                   where id = $1 and ended_at is null and queue_outcome is null""",
                uuid.UUID(w.call_id), agent_id, now)
            if updated != "UPDATE 1":
                return False
            customer_id = await self._link_customer(conn, w)
            await agent_status.set_status(conn, agent_id, "on_call", campaign_id=status["campaign_id"], now=now)
        w.customer_id = customer_id  # only once committed: a rolled-back customer must not be reused
        return True

    async def _link_customer(self, conn: asyncpg.Connection, w: Waiting) -> int:
        """Put the call on its customer: the matched one, else a new one holding the caller's number (or
        named for a withheld number): a wrap-up and a callback need a customer, and the agent completes the
        record. Called only once the call row is known to be taken, so a caller who hung up in between
        leaves no empty customer behind."""
        customer_id = w.customer_id
        if customer_id is None:
            fields = {"phones": [w.caller]} if w.caller.startswith("+") else {"name": "Unknown caller"}
            customer_id = (await customer_store.create_customer(
                conn, fields, default_region=self.cfg.default_region, user_id=None))["id"]
        await conn.execute("update calls set customer_id = $2 where id = $1", uuid.UUID(w.call_id), customer_id)
        return customer_id

    async def _announce_positions(self) -> None:
        """Callers who moved up hear their new position as soon as the announcement playing has ended."""
        for w in list(self.waiting):
            position = self._position(w)
            if position != w.position:
                w.position = position
                w.pending = [await self.audio.position(position), await self.audio.music()] \
                    if not w.offered else await self._offer_playlist(w)
        await self._flush_pending()

    async def _flush_pending(self) -> None:
        """Start the held-back playlists of callers whose current announcement has ended."""
        now = time.monotonic()
        for w in list(self.waiting):
            if w.pending is not None and not w.speaking(now):
                files, w.pending = w.pending, None
                await self._play(w, files)

    async def _play(self, w: Waiting, files: list[Path]) -> None:
        try:
            await self.seats.manager.seat(w.seat).queue_play(w.call_id, files)
        except (CommandError, SeatUnavailable) as e:
            log.info("cannot play to the queued call: %s", e, extra={"call_id": w.call_id})
            return
        self._playing(w, files)

    @staticmethod
    def _playing(w: Waiting, files: list[Path]) -> None:
        # The music is the last file; the position (and the offer) before it are the speech.
        seconds = [wav_seconds(f) for f in files]
        w.playing_since = time.monotonic()
        # + the way to the caller's ear (RTP, jitter buffers) and a little slack.
        w.speech_s = (sum(seconds[:-1]) if len(seconds) > 1 else seconds[0]) + SPEECH_SLACK_S
        w.cycle_s = max(sum(seconds), 0.1)

    # --- callbacks ------------------------------------------------------------------------

    async def _offer_playlist(self, w: Waiting) -> list[Path]:
        return [await self.audio.offer(), await self.audio.position(w.position), await self.audio.music()]

    async def _offer_callbacks(self) -> None:
        after = self.cfg.callback_after_seconds
        if after <= 0:
            return
        now = time.monotonic()
        for w in list(self.waiting):
            if not w.offered and now - w.since >= after:
                w.offered = True
                log.info("callback offered", extra={"call_id": w.call_id, "queue": w.queue})
                w.pending = await self._offer_playlist(w)

    async def _callback(self, w: Waiting) -> None:
        """Pressed 1: the follow-up and the queue exit in one transaction, then a goodbye and hang-up."""
        now = dt.datetime.now(dt.UTC)
        waited = round(time.monotonic() - w.since)
        async with self.pool.acquire() as conn, conn.transaction():
            if w.customer_id is None and not w.caller.startswith("+"):
                log.warning("callback refused: no number to call back", extra={"call_id": w.call_id})
                return
            updated = await conn.execute(
                """update calls set queue_left_at = $2, queue_outcome = 'callback'
                   where id = $1 and queue_outcome is null""", uuid.UUID(w.call_id), now)
            if updated != "UPDATE 1":
                return
            customer_id = await self._link_customer(conn, w)
            follow_up = await follow_ups.create_follow_up(
                conn, customer_id=customer_id, due_at=now + dt.timedelta(minutes=self.cfg.callback_due_minutes),
                owner_agent_id=None, created_by=None, call_id=uuid.UUID(w.call_id), now=now,
                note=f"Callback requested in the inbound queue {w.queue} after {waited} s; call {w.caller}")
        self.waiting.remove(w)
        log.info("callback created", extra={"call_id": w.call_id, "follow_up_id": follow_up["id"],
                                            "customer_id": customer_id})
        confirm = await self.audio.confirm()
        await self._play(w, [confirm])
        self._spawn(self._hang_up_after(w, wav_seconds(confirm) + 1.0))  # + the caller's jitter buffer, slack
        await self._announce_positions()

    async def _hang_up_after(self, w: Waiting, seconds: float) -> None:
        await asyncio.sleep(seconds)
        with contextlib.suppress(CommandError, SeatUnavailable):
            await self.seats.manager.seat(w.seat).hangup(w.call_id)

    async def _leave(self, w: Waiting, outcome: str) -> None:
        with contextlib.suppress(ValueError):
            self.waiting.remove(w)
        async with self.pool.acquire() as conn:
            await conn.execute("""update calls set queue_left_at = now(), queue_outcome = $2
                                  where id = $1 and queue_outcome is null""", uuid.UUID(w.call_id), outcome)
        log.info("inbound call left the queue", extra={"call_id": w.call_id, "outcome": outcome})
        await self._announce_positions()
