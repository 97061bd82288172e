"""The seat's `abandon` command: an answered customer call hears the message at once, then the seat hangs up."""

from __future__ import annotations

import time
import wave

import pytest
from sip_helpers import envelope, read_wav, speech_wav, wait_until

from telephony import events as ev
from telephony.protocol import CommandError

SEAT = "seat1"


def _seconds(path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def _holds_a_second(path) -> bool:
    """The sim may still be closing its WAV (header rewritten last): not readable yet is not done yet."""
    try:
        return path.stat().st_size > 44 and len(read_wav(path)[0]) > 16_000
    except (OSError, EOFError, wave.Error):
        return False


async def test_the_message_plays_at_once_and_the_seat_hangs_up_after_it(seat, peers, tmp_path):
    manager, log = seat
    message = speech_wav(tmp_path, "Sorry, all our agents are busy. Goodbye.", "message")
    heard = tmp_path / "heard.wav"
    customer = await peers("--answer-after", "0.2", "--record", str(heard))
    client = manager.seat(SEAT)

    call_id = await client.dial(customer.uri)
    with pytest.raises(CommandError, match="not an answered customer call"):
        await client.abandon(call_id, str(message))  # still ringing: nothing to play to
    await log.first(ev.CallAnswered, call_id)
    with pytest.raises(CommandError, match="no such file"):
        await client.abandon(call_id, str(tmp_path / "missing.wav"))
    sent = time.monotonic()
    assert await client.abandon(call_id, str(message)) == pytest.approx(_seconds(message), abs=0.01)

    ended = await log.first(ev.CallEnded, call_id)
    took = time.monotonic() - sent
    assert (ended.side, ended.cause) == ("system", "abandoned")
    assert _seconds(message) <= took < _seconds(message) + 2.0  # the whole message, then the BYE
    await wait_until(lambda: any(r.get("sim") == "ended" for r in customer.reports()), what="the sim's end")
    await wait_until(lambda: _holds_a_second(heard), what="the sim's recording")
    loud = envelope(read_wav(heard)[0]) > 300
    assert loud.any() and loud.mean() > 0.3  # the customer heard the message, most of the call
