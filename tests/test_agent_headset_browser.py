"""Issue #5, acceptance 1: a whole call from the agent page with the browser headset.

Headless Chromium (Debian's /usr/bin/chromium) plays an espeak-ng WAV as the agent's microphone
(--use-file-for-fake-audio-capture). The page takes the next lead and dials a real seat process,
which calls telephony/sim; the sim plays the customer's words and records what it hears. Checked
with the bundled Whisper model: the sim heard the agent's words, the seat's recording has them on
its left (agent) channel, and the page played the customer's words (what the page's player worklet
outputs is captured in the page and transcribed). Then the disposition (SALE with an order, CALLBACK
with a due time, COMPLAINT with its content) and the customer's history on the page.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import subprocess
import wave
from pathlib import Path

import factories as make
import pytest
from browser_helpers import log_in_page
from conftest import CHROMIUM, CHROMIUM_ARGS
from sip_helpers import DEADLINE, free_udp_port, speech_wav, wait_until

from crm import db
from qa.audio import RecordingError, read_recording
from qa.pipeline import analyse, qa_options
from telephony.config import SeatConfig
from telephony.manager import SeatManager
from telesales.seats import SeatService
from telesales.settings import load_settings

ALL_DAY = {"calling_window_start": dt.time(0), "calling_window_end": dt.time(0)}
NUMBER = "+8613800138321"
TIMEOUT = 20_000  # ms; a loaded machine is slow
RATE = 16_000

AGENT_TEXT = "Good morning, this is Anna from the sales team, calling about your furniture order."
CUSTOMER_TEXT = "Hello, yes, I am interested. Please call me tomorrow afternoon at home."
AGENT_KEYWORDS = {"good", "morning", "anna", "sales", "team", "calling", "furniture", "order"}
CUSTOMER_KEYWORDS = {"hello", "yes", "interested", "please", "call", "tomorrow", "afternoon", "home"}
# The sim starts speaking this long after the answer: the page's tap opens on the seat's answer event.
CUSTOMER_LEAD_IN = 1.5
# G.722 first on both ends: the check is that the microphone reaches the call, and narrowband G.711 on
# top of Chromium's echo canceller and noise suppressor costs Whisper words for no gain to the test.
WIDEBAND = ("G722", "PCMA", "PCMU")

# A call of ~10 s, three transcriptions on 2 shared cores, and the first join of the model files.
pytestmark = pytest.mark.timeout(600)


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def voices(tmp_path_factory) -> dict[str, Path]:
    """The agent's words (Chromium loops them as the microphone; a pause parts the loops) and the
    customer's, after a lead-in of silence. Two voices, so only the channel says who spoke."""
    folder = tmp_path_factory.mktemp("voices")
    agent = speech_wav(folder, AGENT_TEXT, "agent-words", voice="en-us")
    customer = speech_wav(folder, CUSTOMER_TEXT, "customer-words", voice="en-gb")
    out = {"agent": folder / "agent.wav", "customer": folder / "customer.wav"}
    subprocess.run(["sox", str(agent), str(out["agent"]), "pad", "0", "1.0"], check=True, timeout=60)
    subprocess.run(["sox", str(customer), str(out["customer"]), "pad", str(CUSTOMER_LEAD_IN), "0.5"],
                   check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def qa_settings(tmp_path_factory):
    return load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path_factory.mktemp("qa-data")),
                                  "TELESALES_QA_LANGUAGE": "en"})


@pytest.fixture(scope="module")
def whisper(whisper_base):
    return whisper_base


@pytest.fixture(scope="module")
async def headset_browser(voices):
    """Chromium whose microphone is the agent's WAV; the permission prompt is answered yes."""
    from playwright.async_api import async_playwright

    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={voices['agent']}"]
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        await b.close()


@pytest.fixture
async def sim(peers, voices, tmp_path):
    peer = await peers("--answer-after", "0.3", "--play", str(voices["customer"]),
                       "--record", str(tmp_path / "sim-heard.wav"), "--codecs", ",".join(WIDEBAND))
    peer.recording = tmp_path / "sim-heard.wav"
    return peer


@pytest.fixture
async def app_ctx(db_url, tmp_path, catalog, sim):
    """The app with one real seat (its media link feeds the headset) and dial_uri at the sim."""
    from telesales.app import AppContext

    settings = load_settings(environ={
        "TELESALES_DATA_DIR": str(tmp_path / "var"),
        "TELESALES_TELEPHONY_SEATS": "1",
        "TELESALES_DIALER_DIAL_URI": sim.uri.replace("customer", "{number}"),
    })
    pool = await db.create_pool(db_url, 1, 4)
    cfg = SeatConfig(name="seat1", sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"),
                     codecs=WIDEBAND)
    seats = SeatService(SeatManager([cfg]), pool, tmp_path)
    await seats.start()
    yield AppContext(settings=settings, pool=pool, catalog=catalog, seats=seats)
    await seats.stop()
    await pool.close()


@pytest.fixture
async def page(headset_browser, client):
    context = await headset_browser.new_context(viewport={"width": 1366, "height": 768})
    pg = await context.new_page()
    pg.base_url = str(client.make_url("")).rstrip("/")
    yield pg
    await context.close()


async def _campaign_with_lead(app_ctx) -> int:
    async with app_ctx.pool.acquire() as c:
        campaign_id = await make.campaign(c, name="Furniture", script="Good morning {name}, this is {agent}.",
                                          **ALL_DAY)
        customer_id = await make.customer(c, "Li Na", phones=[NUMBER])
        await make.lead(c, campaign_id, customer_id, NUMBER)
        return customer_id


async def _status(page, status: str) -> None:
    await page.wait_for_function(f"document.querySelector('#status').dataset.status === '{status}'",
                                 timeout=TIMEOUT)


# What the page's player worklet outputs, captured in the page by a second worklet (PcmAudio.capture):
# the same samples the speaker gets, back at 16 kHz.
LISTEN = """() => {
  const h = window.agentHeadset;
  window.heard = [];
  PcmAudio.capture(h.ctx, h.player.node, (frame) => window.heard.push(frame));
}"""
HEARD_SINCE = """(first) => {
  const frames = window.heard.slice(first);
  const bytes = new Uint8Array(frames.length * 640);
  frames.forEach((f, i) => bytes.set(new Uint8Array(f.buffer), i * 640));
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(s);
}"""


async def _words(whisper, qa_settings, path: Path) -> tuple[dict[str, set[str]], list]:
    """Words said per speaker ("agent"/"customer" on a stereo file, "unknown" on a mono one), once."""
    analysis = await asyncio.to_thread(analyse, read_recording(path), whisper, qa_options(qa_settings.qa))
    said = [(s.speaker, s.text) for s in analysis.transcript]
    words: dict[str, set[str]] = {"agent": set(), "customer": set(), "unknown": set()}
    for s in analysis.transcript:
        words[s.speaker] |= words_of(s.text)
    return words, said


def _write_wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return path


async def _finished_wav(path: Path) -> Path:
    """The sim's recorder finalises its WAV header when it is deleted, just after the call ends."""
    def readable():
        try:
            return read_recording(path).duration_s > 1
        except (RecordingError, FileNotFoundError, EOFError, wave.Error):
            return False

    await wait_until(readable, DEADLINE, f"{path.name} to be finalised")
    return path


async def _a_call_through_the_browser_headset(page, app_ctx, sim, voices, tmp_path) -> dict:
    """Log in, start the headset, take the next lead, dial, talk, hang up; returns what was captured."""
    await log_in_page(page, app_ctx, "agent", "anna")
    await page.goto(page.base_url + "/agent")
    assert await page.input_value("#headset-mode") == "browser"  # dialer.headset's default
    await page.click("#headset-start")
    await page.wait_for_selector("#headset[data-state=connected]", timeout=TIMEOUT)
    await page.evaluate(LISTEN)

    await page.click("#ready")
    await _status(page, "ready")
    await page.click("#next-lead")
    await page.wait_for_selector("#lead:not([hidden])", timeout=TIMEOUT)
    await page.click("#dial")
    await _status(page, "on_call")
    await page.wait_for_selector("#headset[data-state=call]", timeout=TIMEOUT)
    first = await page.evaluate("window.heard.length")

    # The page shows the microphone level and that audio flows both ways.
    await page.wait_for_selector("#flow-up[data-flowing=true]", timeout=TIMEOUT)
    await page.wait_for_selector("#flow-down[data-flowing=true]", timeout=TIMEOUT)
    await page.wait_for_function("document.querySelector('#mic-level').value > 0.02", timeout=TIMEOUT)

    # Talk until the customer has said everything and the agent's words went round twice (a loaded
    # machine can starve Chromium's fake capture for a moment; the words of either round count).
    talk = max(_seconds(voices["customer"]), 2 * _seconds(voices["agent"])) + 1.0
    await page.wait_for_function(f"window.heard.length >= {first} + {int(talk * 50)}", timeout=int(talk * 3000))
    stats = await page.evaluate("({...window.agentHeadset.player.stats(), ...window.agentHeadset.stats})")
    heard = base64.b64decode(await page.evaluate(HEARD_SINCE, first))

    await page.click("#hangup")
    await _status(page, "wrap_up")
    await page.wait_for_selector("#headset[data-state=connected]", timeout=TIMEOUT)
    return {"heard": _write_wav(tmp_path / "page-heard.wav", heard), "player": stats}


async def _seat_recording(app_ctx, tmp_path) -> Path:
    async def complete():
        async with app_ctx.pool.acquire() as c:
            return await c.fetchval("select recording_path from calls where recording_state = 'complete'")

    deadline = asyncio.get_running_loop().time() + DEADLINE
    while (path := await complete()) is None:
        assert asyncio.get_running_loop().time() < deadline, "the seat's recording was not closed"
        await asyncio.sleep(0.1)
    return Path(path) if Path(path).is_absolute() else tmp_path / path


async def _check_audio(captured, sim, app_ctx, whisper, qa_settings, tmp_path) -> None:
    sim_words, sim_said = await _words(whisper, qa_settings, await _finished_wav(sim.recording))
    sim_words = sim_words["unknown"]
    page_words, page_said = await _words(whisper, qa_settings, captured["heard"])
    page_words = page_words["unknown"]
    stereo, said = await _words(whisper, qa_settings, await _seat_recording(app_ctx, tmp_path))
    left, right = stereo["agent"], stereo["customer"]
    print("the sim heard:", sim_said)
    print("the page played:", page_said, "player and headset:", captured["player"])
    print("the seat recorded:", said)

    # The far end gets the microphone through Chromium's capture processing and G.722; on a loaded machine
    # Whisper base loses words there ("Lizzie Man from the Salem team"), so 3 here, the content below.
    assert len(sim_words & AGENT_KEYWORDS) >= 3, sim_said
    assert len(page_words & CUSTOMER_KEYWORDS) >= 6, page_said
    assert len(page_words & (AGENT_KEYWORDS - CUSTOMER_KEYWORDS)) <= 1, page_said  # no echo of the agent
    assert len(left & AGENT_KEYWORDS) >= 5, said  # the microphone is on the agent's (left) channel
    assert len(right & CUSTOMER_KEYWORDS) >= 6, said


async def _save(page) -> None:
    await page.click("#save-disposition")
    await page.wait_for_function("document.querySelector('#message').textContent === 'Disposition saved'",
                                 timeout=TIMEOUT)
    await _status(page, "ready")
    await page.wait_for_selector("#saved:not([hidden])", timeout=TIMEOUT)


async def test_a_sale_through_the_browser_headset(page, app_ctx, sim, voices, whisper, qa_settings, tmp_path):
    await _campaign_with_lead(app_ctx)
    captured = await _a_call_through_the_browser_headset(page, app_ctx, sim, voices, tmp_path)
    await _check_audio(captured, sim, app_ctx, whisper, qa_settings, tmp_path)

    await page.select_option("#code", "SALE")
    await page.fill("[name='order.product']", "Oak dining table")
    await page.fill("[name='order.unit_price']", "1280")
    await page.fill("[name='order.delivery_date']", "2099-05-01")
    await page.fill("[name='order.delivery_address']", "8 Century Ave, Shanghai")
    await _save(page)
    history = await page.inner_text("#saved-history")
    assert "Sale" in history and "Oak dining table" in history and "1280.00" in history, history
    async with app_ctx.pool.acquire() as c:
        call = await c.fetchrow("select disposition, answered_at, ended_at from calls")
    assert call["disposition"] == "SALE" and call["answered_at"] and call["ended_at"]


async def test_a_callback_through_the_browser_headset(page, app_ctx, sim, voices, tmp_path):
    await _campaign_with_lead(app_ctx)
    # The same call as the sale's, whose audio (three transcriptions) that test checks; the disposition
    # is chosen after the hang-up, so here only the flow to a callback is checked.
    await _a_call_through_the_browser_headset(page, app_ctx, sim, voices, tmp_path)

    await page.select_option("#code", "CALLBACK")
    due = dt.datetime.now() + dt.timedelta(hours=2)  # "my callbacks" lists those due within 12 hours
    await page.fill("[name='follow_up.due_at']", due.strftime("%Y-%m-%dT%H:%M"))
    await _save(page)
    history = await page.inner_text("#saved-history")
    assert "Follow-ups" in history and "open" in history, history
    await page.wait_for_function("document.querySelector('#callbacks').textContent.includes('Li Na')",
                                 timeout=TIMEOUT)
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select disposition from calls") == "CALLBACK"


async def test_a_complaint_through_the_browser_headset(page, app_ctx, sim, voices, tmp_path):
    await _campaign_with_lead(app_ctx)
    await _a_call_through_the_browser_headset(page, app_ctx, sim, voices, tmp_path)  # audio: see the sale

    await page.select_option("#code", "COMPLAINT")
    await page.fill("[name='complaint.complainant']", "Li Na")
    await page.fill("[name='complaint.content']", "The table was delivered with a broken leg")
    await _save(page)
    history = await page.inner_text("#saved-history")
    assert "Open complaints" in history and "broken leg" in history, history
    async with app_ctx.pool.acquire() as c:
        assert await c.fetchval("select disposition from calls") == "COMPLAINT"
