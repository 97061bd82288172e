"""A seat: one agent's softphone, one pjsua2 endpoint, one OS process.

The process is started by telephony.manager with one end of a socketpair
(`python -m telephony.seat --fd N --config JSON`). A reader thread turns
command lines into a queue; the main thread owns pjsua2: it runs
libHandleEvents(10), drains that queue, enforces ring timeouts and writes
recordings. Nothing else touches pjsua2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

from telephony import events as ev
from telephony import protocol
from telephony.adapter import SeatAccount, SeatCall, TapPool, stream_quality
from telephony.calls import CallState, classify_end
from telephony.channel import Channel
from telephony.config import SeatConfig
from telephony.endpoint import MAX_CALLS, account_config, call_param, start_endpoint, stop_endpoint
from telephony.recording import CallRecording, recording_path

log = logging.getLogger("telephony.seat")

Emit = Callable[[ev.Event], None]


class Seat:
    def __init__(self, cfg: SeatConfig, emit: Emit) -> None:
        self.cfg = cfg
        self.emit = emit
        self.calls: dict[str, CallState] = {}
        # Objects pjsua2 may still call during this libHandleEvents round; dropped after it.
        self._dead: list[Any] = []
        self.taps = TapPool()
        self.rejected_incoming = 0
        self.running = True
        self.handle = start_endpoint(cfg, f"telesales-seat/{cfg.name}")
        self.account = SeatAccount(self)
        self.account.create(account_config(cfg, cfg.name))

    # --- the loop -------------------------------------------------------------

    def run(self, commands: queue.Queue) -> None:
        while self.running:
            self.handle.ep.libHandleEvents(10)
            self._drain_commands(commands)
            self._ring_timeouts()
            self._write_recordings()
            self._dead.clear()
        self.close()

    def _drain_commands(self, commands: queue.Queue) -> None:
        while True:
            try:
                request_id, cmd, args, reply = commands.get_nowait()
            except queue.Empty:
                return
            try:
                reply(protocol.reply_ok(request_id, self.execute(cmd, args)))
            except (protocol.CommandError, pj.Error) as e:
                message = e.info() if isinstance(e, pj.Error) else str(e)
                reply(protocol.reply_error(request_id, message))
            except Exception as e:  # noqa: BLE001 - a bad command must not kill the calls in progress
                log.exception("command %s failed", cmd)
                reply(protocol.reply_error(request_id, f"{type(e).__name__}: {e}"))

    def _ring_timeouts(self) -> None:
        now = time.monotonic()
        for state in list(self.calls.values()):
            if state.ring_deadline is not None and not state.answered and now >= state.ring_deadline:
                state.ring_deadline = None
                state.mark_local("system", "no_answer")
                state.call.hangup(call_param())

    def _write_recordings(self) -> None:
        for state in self.calls.values():
            if state.recording is not None:
                try:
                    state.recording.drain()
                except OSError as e:
                    self._recording_failed(state, e)

    # --- commands -------------------------------------------------------------

    def execute(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"cmd_{cmd}", None)
        if cmd not in protocol.COMMANDS or handler is None:
            raise protocol.CommandError(f"unknown command {cmd!r}")
        return handler(**args)

    def cmd_ping(self) -> dict[str, Any]:
        return {"seat": self.cfg.name, "calls": sorted(self.calls), "rejected_incoming": self.rejected_incoming}

    def cmd_shutdown(self) -> dict[str, Any]:
        self.running = False
        return {}

    def cmd_dial(
        self, to_uri: str, call_id: str | None = None, ring_timeout: float | None = None, play: str | None = None
    ) -> dict[str, Any]:
        if not to_uri.startswith(("sip:", "sips:")):
            raise protocol.CommandError(f"not a SIP URI: {to_uri!r}")
        if len(self.calls) >= MAX_CALLS:
            raise protocol.CommandError(f"seat {self.cfg.name} already has {MAX_CALLS} calls")
        call_id = str(uuid.UUID(call_id)) if call_id else str(uuid.uuid4())
        if call_id in self.calls:
            raise protocol.CommandError(f"call {call_id} already exists")
        call = SeatCall(self.account, self, call_id)
        state = CallState(call, call_id, "outbound", to_uri, play_path=play)
        timeout = self.cfg.ring_timeout_seconds if ring_timeout is None else ring_timeout
        state.ring_deadline = time.monotonic() + timeout
        self.calls[call_id] = state
        try:
            call.makeCall(to_uri, call_param())
        except pj.Error:
            del self.calls[call_id]
            self._dead.append(call)
            raise
        sip_call_id = call.getInfo().callIdString
        self.emit(ev.CallStarted(self.cfg.name, call_id, "outbound", to_uri, sip_call_id))
        return {"call_id": call_id, "sip_call_id": sip_call_id}

    def cmd_answer(self, call_id: str) -> dict[str, Any]:
        self._call(call_id).call.answer(call_param(200))
        return {}

    def cmd_hangup(self, call_id: str) -> dict[str, Any]:
        state = self._call(call_id)
        state.mark_local("agent", "normal_clearing" if state.answered else "cancelled")
        state.call.hangup(call_param())
        return {}

    def cmd_hold(self, call_id: str) -> dict[str, Any]:
        self._call(call_id).call.setHold(call_param())
        return {}

    def cmd_unhold(self, call_id: str) -> dict[str, Any]:
        prm = call_param()
        prm.opt.flag |= pj.PJSUA_CALL_UNHOLD
        self._call(call_id).call.reinvite(prm)
        return {}

    def cmd_send_dtmf(self, call_id: str, digits: str) -> dict[str, Any]:
        if not digits or any(d not in "0123456789*#ABCD" for d in digits):
            raise protocol.CommandError(f"DTMF digits must be 0-9, *, #, A-D; got {digits!r}")
        # RFC 2833 telephone-event is pjsua's default DTMF method.
        self._call(call_id).call.dialDtmf(digits)
        return {}

    def cmd_transfer(self, call_id: str, target: str) -> dict[str, Any]:
        if not target.startswith(("sip:", "sips:")):
            raise protocol.CommandError(f"not a SIP URI: {target!r}")
        state = self._call(call_id)
        state.transfer_target = target
        state.call.xfer(target, call_param())
        return {}

    def _call(self, call_id: str) -> CallState:
        state = self.calls.get(str(call_id))
        if state is None:
            raise protocol.CommandError(f"no call {call_id} on seat {self.cfg.name}")
        return state

    # --- pjsua2 callbacks (adapter.CallOwner) -------------------------------------

    def on_incoming_call(self, account: SeatAccount, pj_call_id: int, source: str) -> None:
        call = SeatCall(account, self, str(uuid.uuid4()), pj_call_id)
        info = call.getInfo()
        refusal = self._refusal(source, info.localUri)
        if refusal:
            # Refused before any agent is rung or any row is written.
            self.rejected_incoming += 1
            call.answer(call_param(refusal))
            self._dead.append(call)
            self.emit(ev.IncomingRejected(self.cfg.name, source, info.remoteUri, info.localUri, refusal))
            return
        state = CallState(call, call.call_id, "inbound", info.remoteUri)
        self.calls[call.call_id] = state
        self.emit(ev.CallStarted(self.cfg.name, call.call_id, "inbound", info.remoteUri, info.callIdString))
        call.answer(call_param(180))

    def _refusal(self, source: str, to_uri: str) -> int:
        """The SIP code to refuse an INVITE with, or 0 to let it ring."""
        if not self._peer_allowed(source) or not self._number_served(to_uri):
            return 403
        return 486 if len(self.calls) >= MAX_CALLS else 0

    def _peer_allowed(self, source: str) -> bool:
        host = source.rsplit(":", 1)[0]
        return source in self.cfg.allowed_peers or host in self.cfg.allowed_peers

    def _number_served(self, to_uri: str) -> bool:
        if not self.cfg.inbound_numbers:
            return True
        user = to_uri.split("sip:", 1)[-1].split("@", 1)[0] if "@" in to_uri else ""
        return user in self.cfg.inbound_numbers

    def on_call_state(self, call: SeatCall) -> None:
        state = self.calls.get(call.call_id)
        if state is None:
            return
        info = call.getInfo()
        if info.state == pj.PJSIP_INV_STATE_EARLY and info.lastStatusCode not in state.ringing_codes:
            state.ringing_codes.add(info.lastStatusCode)
            self.emit(ev.CallRinging(self.cfg.name, state.call_id, info.lastStatusCode))
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED and not state.answered:
            state.answered = True
            state.ring_deadline = None
            self.emit(ev.CallAnswered(self.cfg.name, state.call_id))
            self._start_recording(state)
            self._wire_media(state, info)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._finish(state, info)

    def on_media_state(self, call: SeatCall) -> None:
        state = self.calls.get(call.call_id)
        if state is not None:
            self._wire_media(state, call.getInfo())

    def on_dtmf(self, call: SeatCall, digit: str) -> None:
        self.emit(ev.DtmfReceived(self.cfg.name, call.call_id, digit))

    def on_transfer_status(self, call: SeatCall, code: int, final: bool) -> None:
        state = self.calls.get(call.call_id)
        if state is None or not final:
            return
        self.emit(ev.CallTransferred(self.cfg.name, call.call_id, state.transfer_target or "", code))
        if 200 <= code < 300:
            state.mark_local("agent", "transferred")
            call.hangup(call_param())

    def on_stream_destroyed(self, call: SeatCall, stream_index: int) -> None:
        state = self.calls.get(call.call_id)
        if state is not None:
            state.quality = stream_quality(call, stream_index)

    def on_transfer_request(self, call: SeatCall, target: str) -> SeatCall | None:
        # A customer (or PBX) asking the seat to call someone else: refused, that is toll-fraud territory.
        return None

    def callback_error(self, where: str, error: BaseException, call: SeatCall | None = None) -> None:
        log.error("pjsua2 callback %s failed: %r", where, error, exc_info=error)
        self.emit(ev.SeatError(self.cfg.name, where, repr(error), getattr(call, "call_id", None)))

    # --- media and recording --------------------------------------------------------

    def _audio(self, state: CallState, info: Any) -> Any:
        for mi in info.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status != pj.PJSUA_CALL_MEDIA_NONE:
                self._note_hold(state, mi.status)
                if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                    return state.call.getAudioMedia(mi.index)
        return None

    def _note_hold(self, state: CallState, status: int) -> None:
        local = status == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD
        remote = status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
        if local != state.held_local:
            state.held_local = local
            self.emit(ev.CallHeld(self.cfg.name, state.call_id, local, "local"))
        if remote != state.held_remote:
            state.held_remote = remote
            self.emit(ev.CallHeld(self.cfg.name, state.call_id, remote, "remote"))

    def _wire_media(self, state: CallState, info: Any) -> None:
        found = self._audio(state, info)
        if found is None:
            return
        audio = found
        if not state.answered:
            if not state.early_media and info.state == pj.PJSIP_INV_STATE_EARLY:
                state.early_media = True
                self.emit(ev.CallEarlyMedia(self.cfg.name, state.call_id))
            return
        # Connect on every media update: a re-INVITE (hold/unhold, codec change) may rebuild the
        # stream and its bridge slot, and connecting an already connected pair is harmless.
        left, right = (state.taps + [None, None])[:2]
        if right is not None:
            audio.startTransmit(right)
        if state.play_path and state.player is None:
            state.player = pj.AudioMediaPlayer()
            state.player.createPlayer(state.play_path, pj.PJMEDIA_FILE_NO_LOOP)
        if state.player is not None:
            state.player.startTransmit(audio)
            if left is not None:
                state.player.startTransmit(left)

    def _start_recording(self, state: CallState) -> None:
        path = recording_path(self.cfg.recordings_dir, state.call_id)
        try:
            rec = CallRecording(path)
        except OSError as e:
            state.recording_path = str(path)
            self._recording_failed(state, e)
            return
        state.recording, state.recording_path = rec, str(path)
        # Left = what the agent side sends into the call; right = what the customer sends.
        state.taps = [
            self.taps.take(f"rec-l-{state.call_id[:8]}", lambda f: rec.push(rec.left, f)),
            self.taps.take(f"rec-r-{state.call_id[:8]}", lambda f: rec.push(rec.right, f)),
        ]
        self.emit(ev.RecordingStarted(self.cfg.name, state.call_id, str(path)))

    def _recording_failed(self, state: CallState, error: OSError) -> None:
        log.error("recording of call %s failed: %s", state.call_id, error)
        if state.recording is not None:
            state.recording.writer.abandon()
        self.taps.give_back(state.taps)
        state.recording, state.taps = None, []
        self.emit(ev.RecordingClosed(self.cfg.name, state.call_id, state.recording_path or "", "failed_storage",
                                     None, 0.0, 0))

    def _close_recording(self, state: CallState) -> None:
        rec = state.recording
        if rec is None:
            return
        try:
            sha256, duration = rec.close()
        except OSError as e:
            self._recording_failed(state, e)
            return
        state.recording = None
        self.emit(ev.RecordingClosed(self.cfg.name, state.call_id, state.recording_path or "", "complete",
                                     sha256, round(duration, 3), rec.dropped))

    def _finish(self, state: CallState, info: Any) -> None:
        self._close_recording(state)
        side, cause = classify_end(state, info.lastStatusCode)
        self.calls.pop(state.call_id, None)
        # Never freed inside its own callback: the loop drops these after libHandleEvents returns.
        self._dead.extend([state.call, state.player])
        self.taps.give_back(state.taps)
        state.player, state.taps = None, []
        quality = dataclasses.asdict(state.quality) if state.quality else None
        self.emit(ev.CallEnded(self.cfg.name, state.call_id, info.lastStatusCode, info.lastReason, side, cause,
                               quality))

    # --- shutdown --------------------------------------------------------------

    def close(self) -> None:
        """Hang up what is left, let pjsua2 finish, then drop every reference before libDestroy."""
        for state in list(self.calls.values()):
            state.mark_local("system", "seat_shutdown")
            try:
                state.call.hangup(call_param())
            except pj.Error:
                pass
        deadline = time.monotonic() + 2
        while self.calls and time.monotonic() < deadline:
            self.handle.ep.libHandleEvents(10)
        for state in self.calls.values():
            self._close_recording(state)
        self.calls.clear()
        self._dead.clear()
        self.taps = None  # before libDestroy; the process is going, so the bridge race (TapPool) no longer matters
        self.account.shutdown()
        self.account = None
        stop_endpoint(self.handle, registered=bool(self.cfg.account.registrar))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telephony.seat")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the service")
    parser.add_argument("--config", required=True, help="SeatConfig as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s seat=%(seat)s %(message)s")
    cfg = SeatConfig.from_json(args.config)
    os.dup2(2, 1)  # pjlib prints its start banner on stdout before any log setting applies
    _add_seat_to_logs(cfg.name)
    channel = Channel(socket.socket(fileno=args.fd))
    try:
        seat = Seat(cfg, channel.emit)
    except pj.Error as e:
        log.error("seat %s cannot start: %s", cfg.name, e.info())
        return 2
    threading.Thread(target=channel.read_forever, name="seat-reader", daemon=True).start()
    channel.emit(ev.SeatReady(cfg.name, cfg.sip_port, os.getpid()))
    seat.run(channel.commands)
    return 0


def _add_seat_to_logs(name: str) -> None:
    factory = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        rec = factory(*args, **kwargs)
        rec.seat = name
        return rec

    logging.setLogRecordFactory(record)


if __name__ == "__main__":
    sys.exit(main())
