"""The scripted SIP peer for tests and the demo: `python -m telephony.sim --port P ...`.

Its own process with its own pjsua2 endpoint (one per process, as for seats).
It answers, rings, rejects, plays, sends DTMF, hangs up and records what it
hears, as the flags say. It prints one JSON object per line on stdout: first
{"sim": "ready", "port": P}, then what happened ({"sim": "dtmf", "digit": "5"} ...),
so a test can wait on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pjsua2 as pj

from telephony.adapter import SeatAccount, SeatCall
from telephony.config import SeatConfig
from telephony.endpoint import account_config, call_param, start_endpoint, stop_endpoint

log = logging.getLogger("telephony.sim")


@dataclass
class SimCall:
    call: SeatCall
    timers: list[tuple[float, str]] = field(default_factory=list)
    player: Any = None
    recorder: Any = None
    answered: bool = False


class Sim:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        cfg = SeatConfig(name="sim", sip_port=args.port, recordings_dir="", bind_address=args.bind,
                         codecs=tuple(args.codecs.split(",")), pjsip_log_level=args.log_level)
        self.handle = start_endpoint(cfg, "telesales-sim")
        self.account = SeatAccount(self)
        # The From user of calls it places (--from-user): a caller's number, for caller-id matching.
        self.account.create(account_config(cfg, args.from_user or "sim"))
        self.calls: dict[str, SimCall] = {}
        self._dead: list[Any] = []
        self.running = True
        self.calls_seen = 0
        self.recordings_made = 0

    def say(self, what: str, **fields: Any) -> None:
        print(json.dumps({"sim": what, **fields}), file=self.args.report, flush=True)

    def run(self) -> None:
        self.say("ready", port=self.args.port)
        if self.args.call:
            self._place_call(self.args.call)
        while self.running:
            self.handle.ep.libHandleEvents(10)
            self._fire_timers()
            self._dead.clear()
        self.close()

    def _place_call(self, uri: str) -> None:
        """--call: the sim is the caller (an inbound caller for the service); the flags apply as on answer."""
        call = SeatCall(self.account, self, str(uuid.uuid4()))
        self.calls[call.call_id] = SimCall(call)
        call.makeCall(uri, call_param())
        self.say("calling", uri=uri)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        for sim_call in list(self.calls.values()):
            due = [t for t in sim_call.timers if t[0] <= now]
            for timer in due:
                sim_call.timers.remove(timer)
                self._act(sim_call, timer[1])

    def _act(self, sim_call: SimCall, action: str) -> None:
        call = sim_call.call
        if action == "answer":
            call.answer(call_param(200))
        elif action == "hangup":
            call.hangup(call_param())
        elif action == "dtmf":
            call.dialDtmf(self.args.dtmf)
        elif action.startswith("reject:"):
            call.answer(call_param(int(action.split(":")[1])))

    # --- adapter.CallOwner -----------------------------------------------------------

    def on_incoming_call(self, account: SeatAccount, pj_call_id: int, source: str) -> None:
        call = SeatCall(account, self, str(uuid.uuid4()), pj_call_id)
        sim_call = SimCall(call)
        self.calls[call.call_id] = sim_call
        self.calls_seen += 1
        info = call.getInfo()
        self.say("incoming", source=source, remote=info.remoteUri)
        now = time.monotonic()
        if self.args.reject:
            sim_call.timers.append((now + self.args.reject_after, f"reject:{self.args.reject}"))
            return
        call.answer(call_param(183 if self.args.early_media else 180))
        if self.args.answer_after is not None:
            sim_call.timers.append((now + self.args.answer_after, "answer"))

    def on_call_state(self, call: SeatCall) -> None:
        sim_call = self.calls.get(call.call_id)
        if sim_call is None:
            return
        info = call.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not sim_call.answered:
            sim_call.answered = True
            self.say("answered")
            now = time.monotonic()
            if self.args.hangup_after is not None:
                sim_call.timers.append((now + self.args.hangup_after, "hangup"))
            if self.args.dtmf:
                sim_call.timers.append((now + self.args.dtmf_after, "dtmf"))
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.say("ended", code=info.lastStatusCode, reason=info.lastReason)
            self.calls.pop(call.call_id, None)
            # Deleting the recorder is what finalises its WAV header.
            self._dead.extend([call, sim_call.player, sim_call.recorder])
            sim_call.player = sim_call.recorder = None
            if self.args.exit_after_calls and self.calls_seen >= self.args.exit_after_calls and not self.calls:
                self.running = False

    def on_media_state(self, call: SeatCall) -> None:
        sim_call = self.calls.get(call.call_id)
        if sim_call is None:
            return
        # Keep the CallInfo alive while reading .media: SWIG hands out references into it.
        info = call.getInfo()
        for mi in info.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self._connect(sim_call, call.getAudioMedia(mi.index))

    def _connect(self, sim_call: SimCall, audio: Any) -> None:
        # Open both files before connecting either: the player and the recorder then join the
        # bridge microseconds apart (in the same tick), so the recording's sample 0 is the player's sample 0.
        if self.args.play and sim_call.player is None:
            sim_call.player = pj.AudioMediaPlayer()
            if len(self.args.play) == 1:
                sim_call.player.createPlayer(self.args.play[0], 0 if self.args.loop else pj.PJMEDIA_FILE_NO_LOOP)
            else:
                files = pj.StringVector()
                for name in self.args.play:
                    files.append(name)
                sim_call.player.createPlaylist(files, "sim", 0 if self.args.loop else pj.PJMEDIA_FILE_NO_LOOP)
        if self.args.record and sim_call.recorder is None:
            sim_call.recorder = pj.AudioMediaRecorder()
            sim_call.recorder.createRecorder(self._record_path())
        if sim_call.player is not None:
            sim_call.player.startTransmit(audio)
        if sim_call.recorder is not None:
            audio.startTransmit(sim_call.recorder)

    def _record_path(self) -> str:
        """--record for the first call; NAME-2.wav, NAME-3.wav ... for later ones (a transfer's new leg)."""
        self.recordings_made += 1
        if self.recordings_made == 1:
            return self.args.record
        base, dot, ext = self.args.record.rpartition(".")
        path = f"{base}-{self.recordings_made}.{ext}" if dot else f"{self.args.record}-{self.recordings_made}"
        self.say("recording", path=path)
        return path

    def on_dtmf(self, call: SeatCall, digit: str) -> None:
        self.say("dtmf", digit=digit)

    def on_replace_request(self, call: SeatCall) -> int:
        return 0  # accept: the sim plays the target of an attended transfer

    def on_call_replaced(self, call: SeatCall, new_pj_call_id: int) -> SeatCall | None:
        """An INVITE with Replaces took over `call` (attended transfer): the new leg is ours to follow."""
        new_call = SeatCall(self.account, self, str(uuid.uuid4()), new_pj_call_id)
        self.calls[new_call.call_id] = SimCall(new_call)
        self.say("replaced", remote=new_call.getInfo().remoteUri)
        return new_call

    def on_transfer_status(self, call: SeatCall, code: int, final: bool) -> None:
        pass

    def on_stream_destroyed(self, call: SeatCall, stream_index: int) -> None:
        pass

    def on_transfer_request(self, call: SeatCall, target: str) -> SeatCall | None:
        """Follow a REFER: the new leg is ours, so its states and media are reported like any call."""
        self.say("transfer", target=target)
        new_call = SeatCall(self.account, self, str(uuid.uuid4()))
        self.calls[new_call.call_id] = SimCall(new_call)
        return new_call

    def callback_error(self, where: str, error: BaseException, call: SeatCall | None = None) -> None:
        log.error("callback %s failed: %r", where, error)
        self.say("error", where=where, error=repr(error))

    def close(self) -> None:
        for sim_call in self.calls.values():
            try:
                sim_call.call.hangup(call_param())
            except pj.Error:
                pass
        deadline = time.monotonic() + 1
        while self.calls and time.monotonic() < deadline:
            self.handle.ep.libHandleEvents(10)
        self.calls.clear()
        self._dead.clear()
        self.account.shutdown()
        self.account = None
        stop_endpoint(self.handle)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m telephony.sim", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--call", help="SIP URI to call at start (the sim is the caller; --play/--dtmf/--record apply)")
    p.add_argument("--from-user", help="user part of the From URI of calls placed (e.g. the caller's number)")
    p.add_argument("--answer-after", type=float, help="seconds of ringing before 200 OK; omit to ring forever")
    p.add_argument("--early-media", action="store_true", help="ring with 183 Session Progress instead of 180")
    p.add_argument("--reject", type=int, help="final SIP code to answer with (486, 404, 603, ...)")
    p.add_argument("--reject-after", type=float, default=0.0)
    p.add_argument("--play", action="append", help="WAV to play after answer; repeat for a sequence")
    p.add_argument("--loop", action="store_true", help="repeat the WAV(s) until the call ends")
    p.add_argument("--dtmf", help="digits to send (RFC 2833) after answer")
    p.add_argument("--dtmf-after", type=float, default=0.5)
    p.add_argument("--hangup-after", type=float, help="seconds after answer to send BYE")
    p.add_argument("--record", help="mono WAV of what the sim hears")
    p.add_argument("--codecs", default="PCMA,PCMU,G722")
    p.add_argument("--exit-after-calls", type=int, default=0)
    p.add_argument("--log-level", type=int, default=1, help="pjsip log level")
    return p.parse_args(argv)


def _stdout_for_reports() -> Any:
    """Keep stdout for our JSON lines: pjlib prints its start banner to fd 1 before any log config applies."""
    report = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    args = parse_args(argv)
    args.report = _stdout_for_reports()
    sim = Sim(args)
    # SIGINT too: Ctrl-C on `make run` reaches the whole process group, the service's demo trunk included.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(sim, "running", False))
    sim.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
