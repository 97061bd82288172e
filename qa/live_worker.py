"""The live path of a QA worker: transcribe calls while they happen, raise alerts.

How live work is shared: a call answered on a seat is announced on the
PostgreSQL channel `live_calls` (a trigger in migration 0010). Every worker
with live.enabled listens; each takes calls with a lease row in live_calls
(first claim wins, the lease is renewed every third of live.lease_seconds)
while it holds fewer than live.max_calls_per_worker, so the calls spread over
the workers that have room. Workers also poll every live.poll_seconds for
live calls nobody holds (a notification missed while starting, a worker that
died: its lease lapses and another worker takes the rest of the call).

Audio: the worker opens a WebSocket to the service (GET
/api/v1/qa/live/{call_id}/audio with its worker token). The service only
relays its media tap's frames; all voice activity and transcription happen
here. A worker on the service's machine without qa.worker_token makes itself
a token in the database at start (it is trusted with the database anyway)
and revokes it when it stops.

When no worker is up nothing breaks and nothing is lost: the call goes on,
the supervisor's view shows no live text, and the recording is transcribed
and scored after hang-up as always. Speech before a worker took the call is
not transcribed live (the post-call transcript has it).

Transcription runs on its own thread (one per worker, shared by the calls it
holds, in order of speech end) beside the post-call job's thread, on a
Whisper instance of its own (qa.live_transcribe: live.threads threads, a
window fitted to the utterance, the call's language detected once), so a
live utterance never queues behind a post-call batch.

Each utterance's way is timed (UtteranceTiming, wall clock): cut (the
speaker's pause reached vad_merge_gap_ms), started and transcribed (the
model), stored (the segment's row and its notification committed). The last
ones are kept in LiveWorker.timings and logged, for bench/live_transcript_lag.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
import asyncpg

from crm import live as store
from crm import worker_tokens
from qa.live import ChannelCutter, LiveMetrics, LiveOptions, Utterance, phrase_alerts
from qa.live_transcribe import LiveLanguage, live_transcribe_options, transcribe_live
from qa.pipeline import QaOptions
from qa.segments import AGENT, CUSTOMER

log = logging.getLogger("qa.live")

DIRECTIONS = {0: AGENT, 1: CUSTOMER}  # first byte of each audio message from the service
MAX_AGE_S = 4 * 3600.0  # an "answered, not ended" call older than this is a stale row, not a live call
TIMINGS_KEPT = 200


@dataclass
class UtteranceTiming:
    """When one utterance passed each stage of the live path (time.time())."""

    call_id: str
    speaker: str
    speech_s: float  # tap time of its end of speech
    cut: float
    started: float = 0.0
    transcribed: float = 0.0
    stored: float = 0.0
    segments: int = 0


class LiveCall:
    """One call followed live: its audio stream in, segments and alerts out to the store."""

    def __init__(self, worker: LiveWorker, call_id: uuid.UUID) -> None:
        self.worker = worker
        self.call_id = call_id
        qa = worker.qa_options
        cut = {"vad": qa.vad, "padding_s": qa.transcribe.padding_s, "max_segment_s": worker.options.max_segment_s}
        self.cutters = {AGENT: ChannelCutter(AGENT, **cut), CUSTOMER: ChannelCutter(CUSTOMER, **cut)}
        self.metrics = LiveMetrics(worker.options, qa.vad.merge_gap_ms / 1000)
        self.utterances: asyncio.Queue[tuple[Utterance, float] | None] = asyncio.Queue()  # with when it was cut
        self.language = LiveLanguage(worker.transcribe_options.language)  # detected once per call
        self.skipped = 0
        self.ids = {"call_id": str(call_id), "worker_id": worker.worker_id}

    async def run(self) -> str:
        transcriber = asyncio.create_task(self._transcribe_all())
        try:
            outcome = await self._stream()
        except asyncio.CancelledError:
            transcriber.cancel()  # the worker is stopping: what is not transcribed yet is the post-call QA's
            raise
        for cutter in self.cutters.values():
            if (rest := cutter.flush()) is not None:
                self.utterances.put_nowait((rest, time.time()))
        self.utterances.put_nowait(None)
        await transcriber  # the call ended: its last words still come out
        return outcome

    async def _stream(self) -> str:
        w = self.worker
        url = f"{w.options.service_url}/api/v1/qa/live/{self.call_id}/audio"
        try:
            async with w.http.ws_connect(url, headers={"Authorization": f"Bearer {w.token}"}, heartbeat=10) as ws:
                log.info("live call followed", extra=self.ids)
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY and len(msg.data) > 1:
                        await self._frame(DIRECTIONS.get(msg.data[0]), msg.data[1:])
        except aiohttp.WSServerHandshakeError as e:
            log.info("no live audio for call", extra=self.ids | {"status": e.status})
            return "no_audio"
        except aiohttp.ClientError as e:
            log.warning("live audio connection failed", extra=self.ids | {"error": str(e)})
            return "connection_lost"
        return "ended"

    async def _frame(self, speaker: str | None, pcm: bytes) -> None:
        if speaker is None:
            return
        for utterance in self.cutters[speaker].feed(pcm):
            self.utterances.put_nowait((utterance, time.time()))
        if speaker == CUSTOMER:  # both directions arrive frame by frame; check the metrics once per pair
            for alert in self.metrics.update(self.cutters[AGENT], self.cutters[CUSTOMER]):
                await self.worker.alert(self.call_id, alert)

    async def _transcribe_all(self) -> None:
        while (item := await self.utterances.get()) is not None:
            utterance, queued = item
            timing = UtteranceTiming(str(self.call_id), utterance.speaker, utterance.end_s, queued)
            if time.time() - queued > self.worker.options.max_lag_s:
                # Transcription fell behind (a loaded machine, too many calls): text this late is no longer
                # live, and the post-call QA transcribes it anyway. Catch up instead of lagging for good.
                self.skipped += 1
                log.warning("live utterance skipped: too late", extra=self.ids | {"skipped": self.skipped})
                continue
            timing.started = time.time()
            try:
                segments = await self.worker.transcribe(utterance, self.language)
            except Exception:  # noqa: BLE001 - one bad utterance must not end the call's live transcript
                log.exception("live transcription failed", extra=self.ids)
                continue
            timing.transcribed = time.time()
            for segment in segments:
                await self.worker.segment(self.call_id, segment)
            timing.stored, timing.segments = time.time(), len(segments)
            self.worker.timed(timing)


class LiveWorker:
    def __init__(self, pool: asyncpg.Pool, model, worker_id: str, options: LiveOptions, qa_options: QaOptions,
                 token: str = "") -> None:
        self.pool = pool
        self.model = model
        self.worker_id = worker_id
        self.options = options
        self.qa_options = qa_options
        self.transcribe_options = live_transcribe_options(qa_options.transcribe, options.language)
        self.timings: deque[UtteranceTiming] = deque(maxlen=TIMINGS_KEPT)
        self.token = token
        self._own_token: str | None = None  # the name of the token this worker made for itself
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="qa-live")
        self.http: aiohttp.ClientSession | None = None
        self.calls: dict[uuid.UUID, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._announced: list[uuid.UUID] = []

    async def run(self, stopping: asyncio.Event) -> None:
        async with self.pool.acquire() as listener:
            await listener.add_listener(store.CALLS_CHANNEL, self._on_call)
            try:
                await self._setup()
                while not stopping.is_set():
                    await self._take_calls()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._woken_or(stopping), self.options.poll_s)
            finally:
                await listener.remove_listener(store.CALLS_CHANNEL, self._on_call)
                await self._teardown()

    async def _woken_or(self, stopping: asyncio.Event) -> None:
        wake, stop = asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({wake, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            stop.cancel()
        self._wake.clear()

    def _on_call(self, conn, pid, channel, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._announced.append(uuid.UUID(payload))
            self._wake.set()

    async def _setup(self) -> None:
        self.http = aiohttp.ClientSession()
        if not self.token:
            name = f"live-{self.worker_id}-{uuid.uuid4().hex[:8]}"
            async with self.pool.acquire() as conn:
                _, self.token = await worker_tokens.create_token(conn, name)
            self._own_token = name
        log.info("live transcription ready", extra={"worker_id": self.worker_id, "service": self.options.service_url})

    async def _teardown(self) -> None:
        for task in self.calls.values():
            task.cancel()
        await asyncio.gather(*self.calls.values(), return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        if self._own_token:
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    await worker_tokens.revoke(conn, self._own_token)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _take_calls(self) -> None:
        announced, self._announced = self._announced, []
        async with self.pool.acquire() as conn:
            candidates = announced + await store.unclaimed_calls(conn, MAX_AGE_S)
            for call_id in dict.fromkeys(candidates):
                if len(self.calls) >= self.options.max_calls_per_worker:
                    return
                if call_id in self.calls:
                    continue
                if await store.claim(conn, call_id, self.worker_id, self.options.lease_s):
                    self.calls[call_id] = asyncio.create_task(self._follow(call_id), name=f"live-{call_id}")

    async def _follow(self, call_id: uuid.UUID) -> None:
        renewer = asyncio.create_task(self._renew(call_id))
        outcome = "failed"
        try:
            outcome = await LiveCall(self, call_id).run()
        except Exception:  # noqa: BLE001 - a broken call is logged; the worker goes on with the others
            log.exception("live call failed", extra={"call_id": str(call_id)})
        finally:
            renewer.cancel()
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    await store.finish(conn, call_id, self.worker_id, outcome)
            self.calls.pop(call_id, None)  # after the row says why it ended
            log.info("live call done", extra={"call_id": str(call_id), "outcome": outcome})
            self._wake.set()  # room for another call

    async def _renew(self, call_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.options.lease_s / 3)
            async with self.pool.acquire() as conn:
                if not await store.renew(conn, call_id, self.worker_id, self.options.lease_s):
                    log.warning("live lease lost", extra={"call_id": str(call_id)})

    async def transcribe(self, utterance: Utterance, language: LiveLanguage):
        """On the live thread, with self.model: the live model (qa.live_transcribe.load_live_model)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, transcribe_live, self.model, utterance,
                                          self.transcribe_options, self.options.window_s, language)

    def timed(self, timing: UtteranceTiming) -> None:
        self.timings.append(timing)
        log.debug("live utterance done", extra={
            "call_id": timing.call_id, "queue_s": round(timing.started - timing.cut, 3),
            "model_s": round(timing.transcribed - timing.started, 3),
            "store_s": round(timing.stored - timing.transcribed, 3), "segments": timing.segments})

    async def segment(self, call_id: uuid.UUID, segment) -> None:
        async with self.pool.acquire() as conn:
            await store.add_segment(conn, call_id, segment.speaker, segment.start, segment.end, segment.text)
        for alert in phrase_alerts(segment, self.options):
            await self.alert(call_id, alert)

    async def alert(self, call_id: uuid.UUID, alert) -> None:
        async with self.pool.acquire() as conn:
            await store.add_alert(conn, call_id, alert.kind, alert.speaker, alert.name, alert.text)
        log.info("live alert", extra={"call_id": str(call_id), "kind": alert.kind, "name": alert.name})


def live_enabled(settings: SimpleNamespace) -> bool:
    return bool(getattr(settings, "live", None) and settings.live.enabled)
