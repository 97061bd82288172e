"""Live transcript lag: end of speech -> its text on the supervisor's WebSocket (issue #7, acceptance 2).

    .venv/bin/python bench/live_transcript_lag.py [--utterances 8] [--gap 1] [--language en|auto]
                                                  [--post-call-load]

Everything real, in one process except the seat and the customer: an embedded
PostgreSQL in a temporary folder, the app on a local port with one seat
(pjsua2 process), telephony/sim as the customer, the live QA worker
(qa.live_worker, bundled Whisper base int8 on the CPU) tapping the call over
the service's audio WebSocket, and a supervisor's transcript WebSocket.
The agent side speaks espeak-ng sentences into the call in real time (a media
tap's inject, as a headset would); the end of speech is the moment the last
voiced 20 ms frame went in. Lag = the time the segment's text arrives on the
supervisor's socket minus that moment. One utterance at a time (the next
starts once the text came, or after 60 s).

Baselines, same run: Whisper alone on the same utterances, (a) as the live
path runs it now (qa.live_transcribe on its own live.threads model, fitted
window) and (b) as it ran before (the post-call transcription of one
utterance on a one-thread replica, 30 s window, word alignment). So lag - (a)
is what the live path adds, and (b) / (a) what the model change saved.

Per stage (medians and p95 over the utterances, from the worker's
UtteranceTiming and the WebSocket arrival): hangover (end of speech -> the
utterance is cut: the vad_merge_gap_ms pause plus the audio's way from the
seat to the worker), queue (cut -> the live thread takes it), model, store
(row + NOTIFY committed), delivery (LISTEN -> hub -> supervisor's WebSocket).

--post-call-load runs what a QA worker does beside the live path: the
post-call model (qa.pipeline.load_model, so at qa.nice) analysing a
synthetic call over and over in a thread of the same process while the
utterances are measured; it prints how many it finished. Compare
TELESALES_QA_NICE=0 (same priority) with the default.

Goal: p95 <= 3 s. Prints /proc/loadavg: on a shared, loaded machine the
Whisper time dominates and grows with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from crm import db  # noqa: E402
from crm.users import create_user  # noqa: E402
from qa.audio import read_recording  # noqa: E402
from qa.live import ChannelCutter, live_options, transcribe_utterance  # noqa: E402
from qa.live_transcribe import LiveLanguage, live_transcribe_options, load_live_model, transcribe_live  # noqa: E402
from qa.live_worker import LiveWorker  # noqa: E402
from qa.pipeline import analyse, load_model, qa_options  # noqa: E402
from telephony.config import SeatConfig  # noqa: E402
from telephony.manager import SeatManager  # noqa: E402
from telesales import store  # noqa: E402
from telesales.app import AppContext, create_app  # noqa: E402
from telesales.passwords import hash_password  # noqa: E402
from telesales.seats import SeatService  # noqa: E402
from telesales.settings import load_settings  # noqa: E402

SENTENCES = [
    "Good morning, this is Anna calling from Bright Solar.",
    "Do you have a minute to talk about your electricity bill?",
    "We can install the panels next month.",
    "The price includes installation and five years of service.",
    "Would Tuesday afternoon suit you for a visit?",
    "I will send the contract to your email today.",
    "Thank you for your time, have a nice day.",
    "May I ask how much you pay each month?",
]
FRAME = 640


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def speech(folder: Path, n: int, text: str) -> np.ndarray:
    raw, out = folder / f"u{n}-raw.wav", folder / f"u{n}.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True, timeout=60)
    import wave

    with wave.open(str(out)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    loud = np.nonzero(np.abs(samples) > 500)[0]
    return samples[: loud[-1] + 1] if loud.size else samples  # speech ends at the last voiced sample


async def inject(tap, samples: np.ndarray) -> float:
    """Speak samples into the call as the agent, in real time; returns time.time() as the last frame went in."""
    pcm = samples.astype("<i2").tobytes()
    pcm += b"\0" * (-len(pcm) % FRAME)
    start = time.monotonic()
    for n, i in enumerate(range(0, len(pcm), FRAME)):
        await tap.inject(pcm[i:i + FRAME], to="both")
        delay = start + (n + 1) * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return time.time()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _cut(settings, samples: np.ndarray):
    """The utterance as the live path hands it over (cut by the same cutter)."""
    qa, options = qa_options(settings.qa), live_options(settings)
    cutter = ChannelCutter("agent", qa.vad, qa.transcribe.padding_s, options.max_segment_s)
    audio = np.concatenate([np.zeros(8000, np.int16), samples, np.zeros(16000, np.int16)]).tobytes()
    return [u for i in range(0, len(audio), FRAME) for u in cutter.feed(audio[i:i + FRAME])][0]


async def baseline(live_model, before_model, settings, utterances: list[np.ndarray]) -> dict[str, list[float]]:
    """Whisper alone on each utterance: the live path's way now, and the way before (see the module doc)."""
    qa, options = qa_options(settings.qa), live_options(settings)
    now = live_transcribe_options(qa.transcribe, options.language)
    before = qa.transcribe.__class__(**{**vars(qa.transcribe), "language": options.language})
    times: dict[str, list[float]] = {"now": [], "before": []}
    for samples in utterances:
        cut = _cut(settings, samples)
        started = time.monotonic()
        await asyncio.to_thread(transcribe_live, live_model, cut, now, options.window_s, LiveLanguage("en"))
        times["now"].append(time.monotonic() - started)
        started = time.monotonic()
        await asyncio.to_thread(transcribe_utterance, before_model, cut, before)
        times["before"].append(time.monotonic() - started)
    return times


class PostCallLoad:
    """A post-call job beside the live path: one synthetic call analysed over and over on its own thread."""

    def __init__(self, model, settings, folder: Path) -> None:
        from synth_calls import CALLS, rendered

        self.recording = read_recording(rendered(CALLS[0], folder)[0])
        self.model, self.options = model, qa_options(settings.qa)
        self.stopping, self.done = threading.Event(), 0
        self.thread = threading.Thread(target=self._loop, name="post-call-load", daemon=True)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            analyse(self.recording, self.model, self.options)
            self.done += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()
        minutes = self.done * self.recording.duration_s / 60
        print(f"post-call load: {self.done} analyses of a {self.recording.duration_s:.0f} s call "
              f"({minutes:.1f} audio minutes) during the measurement")


async def run(args, folder: Path) -> None:
    import pgserver

    print(f"loadavg at start: {loadavg()}")
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    try:
        admin = await db.connect(server.get_uri())
        await admin.execute("create database livebench")
        await admin.close()
        url = db.with_database(server.get_uri(), "livebench")
        settings = load_settings(environ={**os.environ, "TELESALES_DATA_DIR": str(folder / "var"),  # TELESALES_* apply
                                          "TELESALES_LIVE_LANGUAGE": args.language,
                                          "TELESALES_LIVE_MAX_LAG_SECONDS": "600"})
        catalog = store.disposition_catalog(settings)
        await store.prepare(url, catalog)
        await measure(args, folder, settings, url, catalog)
    finally:
        server.cleanup()


async def measure(args, folder: Path, settings, url: str, catalog) -> None:
    voices = folder / "voices"
    voices.mkdir()
    utterances = [speech(voices, n, SENTENCES[n % len(SENTENCES)]) for n in range(args.utterances)]
    model = await asyncio.to_thread(load_live_model, settings, live_options(settings).threads)
    before_model = await asyncio.to_thread(load_model, settings)  # the post-call model, one thread per lane
    base = await baseline(model, before_model, settings, utterances)

    pool = await db.create_pool(url, 1, 6)
    sip_port = _free_port()
    seats = SeatService(SeatManager([SeatConfig(name="seat1", sip_port=sip_port,
                                                recordings_dir=str(folder / "recordings"))]), pool, folder)
    await seats.start()
    app = create_app(AppContext(settings=settings, pool=pool, catalog=catalog, seats=seats))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    sim_port = _free_port()
    sim = subprocess.Popen([sys.executable, "-m", "telephony.sim", "--port", str(sim_port), "--answer-after", "0"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker_pool = await db.create_pool(url, 1, 4)
    options = live_options(settings).__class__(**{**vars(live_options(settings)), "service_url": base_url,
                                                   "poll_s": 0.5})
    worker = LiveWorker(worker_pool, model, "bench-live", options, qa_options(settings.qa))
    stopping = asyncio.Event()
    worker_task = asyncio.create_task(worker.run(stopping))
    lags: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    try:
        async with pool.acquire() as c:
            await create_user(c, "sup", "supervisor", hash_password("correct horse"))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # an IP host
            resp = await http.post(f"{base_url}/api/v1/session", json={"username": "sup", "password": "correct horse"})
            assert resp.status == 200, await resp.text()
            await asyncio.sleep(1.0)  # the sim binds its port
            call_id = await seats.dial("seat1", f"sip:customer@127.0.0.1:{sim_port}")
            ws = await http.ws_connect(f"{base_url}/api/v1/live/calls/{call_id}/transcript",
                                       headers={"Origin": base_url})
            await _until(lambda: worker.calls, 30, "the worker to take the call")
            tap = await seats.manager.seat("seat1").open_tap(call_id)
            await asyncio.sleep(1.0)
            load = PostCallLoad(before_model, settings, folder) if args.post_call_load else contextlib.nullcontext()
            with load:
                await _speak(args, utterances, tap, ws, worker, base, lags, stages)
            await tap.aclose()
            await ws.close()
            await seats.manager.seat("seat1").hangup(str(call_id))
    finally:
        stopping.set()
        await asyncio.wait_for(worker_task, 120)
        await worker_pool.close()
        sim.kill()
        await runner.cleanup()
        await seats.stop()
        await pool.close()
    report(lags, base, stages, settings)


async def _speak(args, utterances, tap, ws, worker, base, lags: list[float], stages: dict[str, list[float]]) -> None:
    """Each utterance into the call, then its lag and stages."""
    for n, samples in enumerate(utterances):
        ended = await inject(tap, samples)
        text = await _next_agent_text(ws, 60)
        if text is None:
            print(f"  utterance {n + 1}: no text within 60 s")
            continue
        lag = text[0] - ended
        lags.append(lag)
        split = await _stages(worker, ended, text[0])
        for name, value in split.items():
            stages[name].append(value)
        print(f"  utterance {n + 1}: {len(samples) / 16000:.1f} s of speech, lag {lag:.2f} s "
              f"({', '.join(f'{k} {v:.2f}' for k, v in split.items())}), whisper alone "
              f"{base['now'][n]:.2f} s (before: {base['before'][n]:.2f} s): {text[1]!r}")
        await asyncio.sleep(args.gap)


STAGES = ("hangover", "queue", "model", "store", "delivery")


async def _stages(worker: LiveWorker, ended: float, arrived: float) -> dict[str, float]:
    """This utterance's way through the live path, in seconds per stage.

    Its timing is the agent's first one cut after the end of speech; the worker files it right after the
    segment's commit, so it may come a moment after the text reached the socket."""
    for _ in range(100):
        t = next((t for t in worker.timings if t.speaker == "agent" and t.segments and t.cut > ended - 0.05), None)
        if t is not None:
            break
        await asyncio.sleep(0.01)
    else:
        return {}
    marks = (ended, t.cut, t.started, t.transcribed, t.stored, arrived)
    return {name: marks[i + 1] - marks[i] for i, name in enumerate(STAGES)}


def report(lags: list[float], base: dict[str, list[float]], stages: dict[str, list[float]], settings) -> None:
    options = live_options(settings)
    print(f"\nloadavg at end: {loadavg()}")
    print(f"qa.nice = {settings.qa.nice}, live.threads = {options.threads}, "
          f"live.window_seconds = {options.window_s:g}, live.language = {options.language!r}, "
          f"qa.vad_merge_gap_ms = {settings.qa.vad_merge_gap_ms}")
    print(f"utterances with text: {len(lags)} of {len(base['now'])}")
    verdict = "met" if pct(lags, 95) <= 3 else "NOT met"
    print(f"lag (end of speech -> text on the WebSocket): p50 {pct(lags, 50):.2f} s, p95 {pct(lags, 95):.2f} s, "
          f"max {max(lags, default=float('nan')):.2f} s  (goal p95 <= 3 s: {verdict})")
    print("stages (p50 / p95 s): " + ", ".join(f"{k} {pct(v, 50):.2f} / {pct(v, 95):.2f}" for k, v in stages.items()))
    now, before = base["now"], base["before"]
    print(f"baseline, Whisper alone on the same utterances, live path now: p50 {pct(now, 50):.2f} s, "
          f"p95 {pct(now, 95):.2f} s; as before (one thread, 30 s window, alignment): p50 {pct(before, 50):.2f} s, "
          f"p95 {pct(before, 95):.2f} s; before / now (p50) {pct(before, 50) / pct(now, 50):.2f}x")
    if lags:
        print(f"ratio lag / Whisper alone now (p50): {pct(lags, 50) / pct(now, 50):.2f}; "
              f"what the live path adds (p50): {pct(lags, 50) - pct(now, 50):.2f} s")


async def _next_agent_text(ws, timeout: float) -> tuple[float, str] | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            return None
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        event = json.loads(msg.data)
        if event["type"] == "transcript" and event["speaker"] == "agent":
            return time.time(), event["text"]
    return None


async def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=8)
    p.add_argument("--gap", type=float, default=1.0, help="seconds of quiet after each utterance's text came")
    p.add_argument("--language", default="en", help="live.language: en (as the README's figures) or auto")
    p.add_argument("--post-call-load", action="store_true", help="a post-call job running beside (see above)")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tslive"))
    try:
        asyncio.run(run(args, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
