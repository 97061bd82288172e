"""What a call recording holds: the right words on the right channel, and both channels on one clock.

Real calls over 127.0.0.1 from a seat process to `telephony/sim` and to SIPp,
and the real bundled Whisper model (loaded once for the module).
"""

from __future__ import annotations

import asyncio
import re
import wave
from pathlib import Path

import numpy as np
import pytest
from sip_helpers import (
    PeerProcess,
    free_udp_port,
    speech_wav,
    udp_port_taken,
    wait_until,
)

from qa.audio import read_recording
from qa.pipeline import analyse, qa_options
from telephony import events as ev
from telesales.settings import load_settings

SEAT = "seat1"
RATE = 16_000

AGENT_TEXT = "Good morning, this is Anna from the sales team, calling about your furniture order."
CUSTOMER_TEXT = "Hello, yes, I am interested. Please call me tomorrow afternoon at home."
AGENT_KEYWORDS = {"morning", "anna", "sales", "team", "calling", "furniture", "order"}
CUSTOMER_KEYWORDS = {"hello", "yes", "interested", "please", "call", "tomorrow", "afternoon", "home"}

# Transcription of a few seconds of audio on 2 cores, plus the first join of the model files.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def qa_settings(tmp_path_factory):
    return load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path_factory.mktemp("qa-data")),
                                  "TELESALES_QA_LANGUAGE": "en"})


@pytest.fixture(scope="module")
def whisper(whisper_base):
    return whisper_base


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


async def test_recording_has_the_agent_words_on_the_left_and_the_sim_words_on_the_right(
        seat, peers, tmp_path, whisper, qa_settings):
    manager, log = seat
    # Two voices, so nothing but the channel tells the recogniser who is speaking.
    agent = speech_wav(tmp_path, AGENT_TEXT, "agent", voice="en-us")
    customer = speech_wav(tmp_path, CUSTOMER_TEXT, "customer", voice="en-gb")
    sim = await peers("--answer-after", "0.2", "--play", str(customer), "--hangup-after", "6.5")

    call_id = await manager.seat(SEAT).dial(sim.uri, play=str(agent))
    closed = await log.first(ev.RecordingClosed, call_id, timeout=30)
    assert closed.state == "complete" and closed.lost_frames == 0

    analysis = await asyncio.to_thread(analyse, read_recording(Path(closed.path)), whisper,
                                       qa_options(qa_settings.qa))
    said = {speaker: set() for speaker in ("agent", "customer")}
    for segment in analysis.transcript:
        said[segment.speaker] |= words_of(segment.text)

    transcript = [(s.speaker, s.text) for s in analysis.transcript]
    print("transcript:", transcript)
    assert len(said["agent"] & AGENT_KEYWORDS) >= 5, transcript
    assert len(said["customer"] & CUSTOMER_KEYWORDS) >= 6, transcript
    # No leak from one channel into the other.
    assert len(said["agent"] & CUSTOMER_KEYWORDS) <= 1, transcript
    assert len(said["customer"] & AGENT_KEYWORDS) <= 1, transcript


# --- alignment --------------------------------------------------------------------

# Six clicks: the jitter buffers (the seat's and the reference sim's) may hold one frame more for
# a while when the machine is busy; the smallest lag of six is the path with none of that.
CLICKS_S = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
CLICK_WAV_S = 3.4


def click_wav(path: Path) -> Path:
    """Silence with a 5 ms 1 kHz burst at each of CLICKS_S (PCMU carries it unharmed)."""
    samples = np.zeros(int(CLICK_WAV_S * RATE), np.int16)
    burst = (16000 * np.sin(2 * np.pi * 1000 * np.arange(80) / RATE)).astype(np.int16)
    for at in CLICKS_S:
        samples[int(at * RATE):int(at * RATE) + len(burst)] = burst
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


def click_onsets(samples: np.ndarray) -> list[float]:
    """Start times (ms) of the bursts: first sample above a quarter of the peak, bursts >= 0.25 s apart."""
    level = np.abs(samples.astype(np.int32))
    loud = np.flatnonzero(level > max(level.max() // 4, 500))
    onsets: list[int] = []
    for i in loud:
        if not onsets or i - onsets[-1] > RATE // 4:
            onsets.append(int(i))
    return [1000 * i / RATE for i in onsets]


def read_wav(path: str | Path) -> tuple[np.ndarray, ...]:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        channels = w.getnchannels()
    return tuple(data[c::channels] for c in range(channels))


def wav_seconds(path: str | Path) -> float:
    """Seconds of audio the file's header describes (0 while it is missing or unreadable)."""
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() / w.getframerate()
    except (OSError, EOFError, wave.Error):
        return 0.0


def start_sipp_echo_uas(port: int) -> PeerProcess:
    """SIPp's built-in answerer, sending every RTP packet straight back (no jitter buffer, no mixing)."""
    return PeerProcess(["sipp", "-sn", "uas", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(port),
                        "-mp", str(free_udp_port()), "-rtp_echo", "-m", "1", "-nostdin", "-timeout", "60s"])


async def pjmedia_echo_delay_ms(peers, tmp_path: Path, click: Path) -> list[float]:
    """The reference: the echo delay as pjmedia's own player and recorder see it in the sim.

    The sim answers SIPp (its built-in caller, echoing RTP), plays the clicks and records what
    comes back with pjsua2's AudioMediaRecorder; player and recorder join the sim's bridge in
    the same tick, so a click's position in that recording minus its position in the file is
    the loop's delay with none of telesales' recording code involved.
    """
    heard = tmp_path / "sim-heard.wav"
    sim = await peers("--play", str(click), "--record", str(heard), "--answer-after", "0")
    sip_port = int(sim.uri.rsplit(":", 1)[1])
    sipp = PeerProcess(["sipp", "-sn", "uac", f"127.0.0.1:{sip_port}", "-i", "127.0.0.1", "-mi", "127.0.0.1",
                        "-p", str(free_udp_port()), "-mp", str(free_udp_port()), "-rtp_echo", "-m", "1",
                        "-nostdin", "-timeout", "60s", "-d", str(int((CLICK_WAV_S + 0.3) * 1000))])
    try:
        await wait_until(lambda: any(r.get("sim") == "ended" for r in sim.reports()), what="SIPp to hang up")
        await wait_until(lambda: wav_seconds(heard) >= CLICK_WAV_S, what="the sim's recording to be closed")
    finally:
        sipp.kill()
    (mono,) = read_wav(heard)
    return [at - 1000 * sent for at, sent in zip(click_onsets(mono), CLICKS_S, strict=True)]


async def test_a_click_echoed_by_the_far_end_lands_where_pjmedia_itself_hears_it(seat, peers, tmp_path):
    """Left and right channels are on one clock: the seat's bridge clock, the agent's ear.

    What "aligned" means. A sound from the customer reaches the agent after the network
    and the seat's jitter buffer; that delay is part of the call as the agent lived it, so
    the right channel must carry it, and no recording can (or should) remove it. What
    the recording must not do is add skew of its own: a sound the seat sends at bridge
    tick k belongs at tick k on the left, a sound the seat's bridge plays to the agent at
    tick k belongs at tick k on the right.

    Why an echo and not two clicks "at the same time" on both ends. A far-end click's
    position on the right is its send time plus the one-way delay, and the one-way delay
    includes the seat's jitter buffer, which only the seat can see: a channel skew and a
    deeper jitter buffer look the same from outside, so a same-instant test could only
    check a guess. A round trip needs no guess when the far end adds nothing: SIPp's
    -rtp_echo returns each RTP packet as it arrives (no jitter buffer, no mixing, well
    under a millisecond on loopback). The agent's click leaves at tick k (left channel),
    its echo is played by the seat's bridge one receive path later (right channel).

    The truth to compare with. That receive path (PCMU decode, resampling, jitter buffer,
    the wait for the next bridge tick) is pjmedia's, the same in the sim as in a seat. The
    sim answers SIPp with the same echo, plays the same clicks and records with pjmedia's
    own player and recorder, which share its bridge tick: that recording gives the delay
    with none of telesales' recording code involved. The seat's left-to-right click lag must
    match it within 20 ms. Both jitter buffers may add a frame for a while on a busy machine,
    so the smallest of six lags is compared on each side (a right channel that runs ahead
    after lost frames makes the seat's smallest lag too small, and fails as well).
    """
    manager, log = seat
    click = click_wav(tmp_path / "click.wav")
    reference = await pjmedia_echo_delay_ms(peers, tmp_path, click)

    port = free_udp_port()
    sipp = start_sipp_echo_uas(port)
    try:
        await wait_until(lambda: udp_port_taken(port), what="SIPp to listen")
        client = manager.seat(SEAT)
        call_id = await client.dial(f"sip:echo@127.0.0.1:{port}", play=str(click))
        started = await log.first(ev.RecordingStarted, call_id)
        # The recording's header is rewritten at each flush: wait until it holds the last echo.
        await wait_until(lambda: wav_seconds(started.path) >= CLICK_WAV_S, what="the clicks to be recorded")
        await client.hangup(call_id)
        closed = await log.first(ev.RecordingClosed, call_id)
    finally:
        sipp.kill()

    left, right = read_wav(closed.path)
    sent, echoed = click_onsets(left), click_onsets(right)
    assert len(sent) == len(echoed) == len(CLICKS_S), (sent, echoed)
    lags = [e - s for s, e in zip(sent, echoed, strict=True)]
    print(f"seat recording: echo lag {lags} ms; pjmedia's own recorder: {reference} ms")
    assert abs(min(lags) - min(reference)) < 20, f"channels skewed: echo lag {lags} ms, pjmedia hears {reference} ms"
