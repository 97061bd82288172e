"""A seat: one agent's softphone, one pjsua2 endpoint, one OS process.

The process is started by telephony.manager with one end of a socketpair
(`python -m telephony.seat --fd N --media-fd M --config JSON`; M carries live
audio, see telephony.media_link). A reader thread turns
command lines into a queue; the main thread owns pjsua2: it runs
libHandleEvents(10), drains that queue, enforces ring timeouts and writes
recordings. Nothing else touches pjsua2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import queue
import socket
import sys
import threading
import time
import uuid
import wave
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

from telephony import events as ev
from telephony import protocol
from telephony.adapter import SeatAccount, SeatCall, stream_quality
from telephony.bridge import SeatBridge
from telephony.calls import CallState, classify_end
from telephony.channel import Channel
from telephony.config import SeatConfig
from telephony.endpoint import MAX_CALLS, account_config, call_param, start_endpoint, stop_endpoint
from telephony.media_link import MAX_TAP_ID, MediaLink
from telephony.recording import CallRecording, recording_path
from telephony.sip_guard import install_guard

log = logging.getLogger("telephony.seat")

Emit = Callable[[ev.Event], None]
ABANDON_TAIL_S = 0.3  # after an abandon message, so its last syllable is not cut by the BYE


class Seat:
    def __init__(self, cfg: SeatConfig, emit: Emit, media: MediaLink | None = None) -> None:
        self.cfg = cfg
        self.emit = emit
        self.calls: dict[str, CallState] = {}
        # Objects pjsua2 may still call during this libHandleEvents round; dropped after it.
        self._dead: list[Any] = []
        self.media = media
        self.bridge = SeatBridge(media, self._dead.extend, lambda: list(self.calls.values()))
        self.rejected_incoming = 0
        self._refusals: list[tuple[Any, int]] = []
        self.running = True
        self.handle = start_endpoint(cfg, f"telesales-seat/{cfg.name}")
        # Answers what pjsua-lib drops or mis-answers (malformed, REGISTER, unknown methods): sip_guard.py.
        self.sip_guard = install_guard(cfg.transport)
        self.account = SeatAccount(self)
        self.account.create(account_config(cfg, cfg.name, self.handle.transport_id))

    # --- the loop -------------------------------------------------------------

    def run(self, commands: queue.Queue) -> None:
        while self.running:
            self.handle.ep.libHandleEvents(10)
            self._refuse_incoming()
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

    def _refuse_incoming(self) -> None:
        # Answered here, not inside onIncomingCall: a final answer from inside the callback to an INVITE
        # without SDP aborts the process in pjsua 2.15.1 (pjsip_rx_data_free_cloned: Assertion `rdata').
        while self._refusals:
            call, code = self._refusals.pop(0)
            call.answer(call_param(code))
            self._dead.append(call)

    def _ring_timeouts(self) -> None:
        now = time.monotonic()
        for state in list(self.calls.values()):
            if state.ring_deadline is not None and not state.answered and now >= state.ring_deadline:
                state.ring_deadline = None
                state.mark_local("system", "no_answer")
                state.call.hangup(call_param())
            elif state.hangup_deadline is not None and now >= state.hangup_deadline:
                state.hangup_deadline = None  # an abandon message has played to its end
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
        headset = self._headset_leg()
        return {
            "seat": self.cfg.name,
            "calls": sorted(c for c, s in self.calls.items() if s.role == "customer"),
            "headset": None if headset is None else ("connected" if headset.answered else "connecting"),
            "rejected_incoming": self.rejected_incoming,
        }

    def cmd_shutdown(self) -> dict[str, Any]:
        self.running = False
        return {}

    def cmd_dial(
        self, to_uri: str, call_id: str | None = None, ring_timeout: float | None = None, play: str | None = None,
        announce: str | None = None, role: str = "customer",
    ) -> dict[str, Any]:
        if not to_uri.startswith(("sip:", "sips:")):
            raise protocol.CommandError(f"not a SIP URI: {to_uri!r}")
        if len(self.calls) >= MAX_CALLS:
            raise protocol.CommandError(f"seat {self.cfg.name} already has {MAX_CALLS} calls")
        call_id = str(uuid.UUID(call_id)) if call_id else str(uuid.uuid4())
        if call_id in self.calls:
            raise protocol.CommandError(f"call {call_id} already exists")
        call = SeatCall(self.account, self, call_id)
        state = CallState(call, call_id, "outbound", to_uri, play_path=play, role=role,
                          announce_path=_wav_arg("announce", announce))
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
        if role == "headset":
            self.emit(ev.HeadsetState(self.cfg.name, "connecting", to_uri, call_id))
        else:
            self.emit(ev.CallStarted(self.cfg.name, call_id, "outbound", to_uri, sip_call_id))
        return {"call_id": call_id, "sip_call_id": sip_call_id}

    def cmd_answer(self, call_id: str, announce: str | None = None) -> dict[str, Any]:
        state = self._call(call_id)
        state.announce_path = _wav_arg("announce", announce) or state.announce_path
        state.call.answer(call_param(200))
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

    # Mute cuts the agent's audio into the call AND into the recording's left channel: the recording is the
    # record of the conversation, so it holds what the customer heard (what an agent says on mute to a colleague
    # is not part of the call). The customer's audio keeps flowing to the agent and the right channel. Mute is
    # done in the seat's bridge, not by hold, so the customer hears silence rather than hold music and no
    # re-INVITE is sent.
    def cmd_mute(self, call_id: str) -> dict[str, Any]:
        return self._set_muted(self._call(call_id), True)

    def cmd_unmute(self, call_id: str) -> dict[str, Any]:
        return self._set_muted(self._call(call_id), False)

    def _set_muted(self, state: CallState, muted: bool) -> dict[str, Any]:
        if state.muted != muted:
            state.muted = muted
            self.bridge.wire(state)
            self.emit(ev.CallMuted(self.cfg.name, state.call_id, muted))
        return {"muted": muted}

    def cmd_abandon(self, call_id: str, message: str) -> dict[str, Any]:
        """An answered call no agent can take (predictive dialing): play the recorded message to the
        customer now, then hang up at its end. Done here, not by the service, so the message starts
        within one loop round and the hang-up does not wait on the service."""
        state = self._call(call_id)
        if state.role != "customer" or not state.answered:
            raise protocol.CommandError(f"call {call_id} is not an answered customer call")
        path = _wav_arg("message", message)
        with wave.open(path) as w:
            seconds = w.getnframes() / w.getframerate()
        if state.announcer is not None and state.audio is not None:
            # A recording notice still playing gives way to the message.
            for sink in (state.audio, *state.taps[:1]):
                with contextlib.suppress(pj.Error):
                    state.announcer.stopTransmit(sink)
            self._dead.append(state.announcer)
        state.announce_path, state.announcer = path, pj.AudioMediaPlayer()
        state.announcer.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)
        self.bridge.wire(state)  # without media yet, on_media_state wires it when it comes
        state.mark_local("system", "abandoned")
        state.hangup_deadline = time.monotonic() + seconds + ABANDON_TAIL_S
        return {"seconds": round(seconds, 3)}
    # --- inbound queue: what a waiting caller hears -----------------------------------------

    def cmd_queue_play(self, call_id: str, files: list[str]) -> dict[str, Any]:
        """Play `files` to the caller in a loop (hold music, position announcements), in place of any agent.

        May come before the answer: the player starts once the call has audio. A new list replaces the old
        one at once (the next announcement starts from its beginning)."""
        state = self._call(call_id)
        if state.role != "customer" or not files:
            raise protocol.CommandError("queue_play needs a customer call and at least one WAV")
        state.queue_files = tuple(_wav_arg("files", f) for f in files)
        if state.queue_player is not None:
            self._dead.append(state.queue_player)  # freed after this round; its bridge port goes with it
            state.queue_player = None
        if state.audio is not None:
            self._start_queue_player(state)
        return {}

    def cmd_queue_connect(self, call_id: str) -> dict[str, Any]:
        """The caller leaves the queue: the player stops and the call is wired like any agent call."""
        state = self._call(call_id)
        state.queue_files = ()
        if state.queue_player is not None:
            player, state.queue_player = state.queue_player, None
            self.bridge.unlink_queue_player(state, player)
            self._dead.append(player)
        self.bridge.wire(state)
        return {}

    def _start_queue_player(self, state: CallState) -> None:
        player = pj.AudioMediaPlayer()
        if len(state.queue_files) == 1:
            player.createPlayer(state.queue_files[0], 0)
        else:
            files = pj.StringVector()
            for name in state.queue_files:
                files.append(name)
            player.createPlaylist(files, "queue", 0)  # options 0: loop
        state.queue_player = player
        self.bridge.wire(state)

    # --- the agent's headset leg -------------------------------------------------------

    def cmd_headset_connect(self, uri: str, ring_timeout: float | None = None) -> dict[str, Any]:
        """Call the agent's own phone and keep that leg up; customer calls are bridged to it."""
        if self._headset_leg() is not None:
            raise protocol.CommandError(f"seat {self.cfg.name} already has a headset leg")
        return self.cmd_dial(uri, ring_timeout=ring_timeout, role="headset")

    def cmd_headset_disconnect(self) -> dict[str, Any]:
        state = self._headset_leg()
        if state is None:
            raise protocol.CommandError(f"seat {self.cfg.name} has no headset leg")
        state.mark_local("agent", "normal_clearing")
        state.call.hangup(call_param())
        return {}

    def _headset_leg(self) -> CallState | None:
        return next((s for s in self.calls.values() if s.role == "headset"), None)

    def _headset_up(self, state: CallState) -> None:
        self.bridge.headset = state
        self.emit(ev.HeadsetState(self.cfg.name, "connected", state.remote_uri, state.call_id))

    def _headset_down(self, state: CallState, info: Any) -> None:
        _, cause = classify_end(state, info.lastStatusCode)
        self.emit(ev.HeadsetState(self.cfg.name, "disconnected", state.remote_uri, state.call_id,
                                  info.lastStatusCode, cause))

    # --- media taps ----------------------------------------------------------------

    def cmd_open_tap(self, call_id: str, tap: int) -> dict[str, Any]:
        state = self._call(call_id)
        if self.media is None:
            raise protocol.CommandError(f"seat {self.cfg.name} has no media link")
        if not state.answered or state.role != "customer":
            raise protocol.CommandError(f"call {call_id} is not an answered customer call")
        if not 0 <= int(tap) <= MAX_TAP_ID or any(tap in s.media_taps for s in self.calls.values()):
            raise protocol.CommandError(f"tap id {tap!r} is out of range or in use")
        self.bridge.open_tap(state, int(tap))
        return {"tap": tap}

    def cmd_close_tap(self, tap: int) -> dict[str, Any]:
        for state in self.calls.values():
            if tap in state.media_taps:
                self.bridge.close_tap(state, tap)
                return {}
        return {}  # already closed with its call

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

    # --- attended transfer: consult, then complete (REFER with Replaces) or cancel -----------------

    def cmd_consult(self, call_id: str, to_uri: str, consult_call_id: str | None = None,
                    ring_timeout: float | None = None, play: str | None = None) -> dict[str, Any]:
        state = self._call(call_id)
        if not state.answered:
            raise protocol.CommandError(f"call {call_id} is not answered; consult needs a connected customer")
        if state.consult_call_id or state.consult_of:
            raise protocol.CommandError(f"call {call_id} already has a consult leg")
        if not state.held_local:
            self.cmd_hold(call_id)
        result = self.cmd_dial(to_uri, call_id=consult_call_id, ring_timeout=ring_timeout, play=play)
        consult = self.calls[result["call_id"]]
        state.consult_call_id, consult.consult_of = consult.call_id, state.call_id
        self.emit(ev.ConsultStarted(self.cfg.name, state.call_id, consult.call_id, to_uri))
        return result

    def cmd_complete_transfer(self, call_id: str) -> dict[str, Any]:
        state, consult = self._consulting(call_id)
        if not consult.answered:
            raise protocol.CommandError(f"consult call {consult.call_id} is not answered yet")
        state.transfer_target = consult.remote_uri
        consult.consult_outcome = "transferring"
        consult.mark_local("agent", "transferred")
        # The customer's phone gets a REFER whose Refer-To carries Replaces=<consult dialog>; it calls the
        # consult target, which swaps our consult leg for that call. NOTIFYs report how it went.
        state.call.xferReplaces(consult.call, call_param())
        return {}

    def cmd_cancel_consult(self, call_id: str) -> dict[str, Any]:
        state, consult = self._consulting(call_id)
        consult.consult_outcome = "cancelled"
        consult.mark_local("agent", "consult_cancelled")
        consult.call.hangup(call_param())
        if state.held_local:
            self.cmd_unhold(call_id)
        return {}

    def _consulting(self, call_id: str) -> tuple[CallState, CallState]:
        state = self._call(call_id)
        consult = self.calls.get(state.consult_call_id or "")
        if consult is None:
            raise protocol.CommandError(f"call {call_id} has no consult leg")
        return state, consult

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
            self._refusals.append((call, refusal))
            self.emit(ev.IncomingRejected(self.cfg.name, source, info.remoteUri, info.localUri, refusal))
            return
        state = CallState(call, call.call_id, "inbound", info.remoteUri)
        self.calls[call.call_id] = state
        self.emit(ev.CallStarted(self.cfg.name, call.call_id, "inbound", info.remoteUri, info.callIdString,
                                 local_uri=info.localUri))
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
        if state.role == "headset" and info.state == pj.PJSIP_INV_STATE_EARLY:
            pass  # the agent's own phone ringing is not a call event
        elif info.state == pj.PJSIP_INV_STATE_EARLY and info.lastStatusCode not in state.ringing_codes:
            state.ringing_codes.add(info.lastStatusCode)
            self.emit(ev.CallRinging(self.cfg.name, state.call_id, info.lastStatusCode))
        elif info.state == pj.PJSIP_INV_STATE_CONFIRMED and not state.answered:
            state.answered = True
            state.ring_deadline = None
            self.emit(ev.CallAnswered(self.cfg.name, state.call_id))
            if state.role == "customer":
                self.bridge.open_ports(state)
                self._start_recording(state)
            else:
                self._headset_up(state)
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
        consult_id = state.consult_call_id
        self.emit(ev.CallTransferred(self.cfg.name, call.call_id, state.transfer_target or "", code,
                                     consult_call_id=consult_id))
        if 200 <= code < 300:
            state.mark_local("agent", "transferred")
            call.hangup(call_param())
        if consult_id:
            self._settle_consult(state, consult_id, 200 <= code < 300)

    def _settle_consult(self, state: CallState, consult_id: str, transferred: bool) -> None:
        """The final NOTIFY of an attended transfer: end or keep the consult leg, and say so once."""
        state.consult_call_id = None
        consult = self.calls.get(consult_id)
        if consult is None:
            # The target hung up the replaced leg before the NOTIFY came (the usual order).
            self.emit(ev.ConsultEnded(self.cfg.name, state.call_id, consult_id,
                                      "transferred" if transferred else "ended"))
        elif transferred:
            consult.consult_outcome = "transferred"
            # The target ends the replaced leg itself; hanging up too covers a target that does not.
            try:
                consult.call.hangup(call_param())
            except pj.Error:
                pass
        else:
            consult.consult_outcome = None
            consult.local_side = consult.local_cause = None

    def on_replace_request(self, call: SeatCall) -> int:
        # An INVITE with Replaces would take over one of the seat's calls without passing the allowed-peer
        # check of on_incoming_call: refused.
        return 403

    def on_call_replaced(self, call: SeatCall, new_pj_call_id: int) -> SeatCall | None:
        return None

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
        audio = self._audio(state, info)
        if audio is None:
            return
        if not state.answered:
            if not state.early_media and info.state == pj.PJSIP_INV_STATE_EARLY:
                state.early_media = True
                self.emit(ev.CallEarlyMedia(self.cfg.name, state.call_id))
            return
        state.audio = audio
        if state.play_path and state.player is None:
            state.player = pj.AudioMediaPlayer()
            state.player.createPlayer(state.play_path, pj.PJMEDIA_FILE_NO_LOOP)
        if state.announce_path and state.announcer is None:
            state.announcer = pj.AudioMediaPlayer()
            state.announcer.createPlayer(state.announce_path, pj.PJMEDIA_FILE_NO_LOOP)
        if state.queue_files and state.queue_player is None:
            self._start_queue_player(state)
        self.bridge.wire(state)

    def _start_recording(self, state: CallState) -> None:
        path = recording_path(self.cfg.recordings_dir, state.call_id)
        try:
            rec = CallRecording(path)
        except OSError as e:
            state.recording_path = str(path)
            self._recording_failed(state, e)
            return
        # Fed by the bridge ports (left = what the agent side sends into the call; right = what the customer sends).
        state.recording, state.recording_path = rec, str(path)
        self.emit(ev.RecordingStarted(self.cfg.name, state.call_id, str(path)))

    def _recording_failed(self, state: CallState, error: OSError) -> None:
        log.error("recording of call %s failed: %s", state.call_id, error)
        if state.recording is not None:
            state.recording.writer.abandon()
        state.recording = None  # the call and its taps go on without it
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
        if state.role == "headset":
            self.calls.pop(state.call_id, None)
            self._dead.append(state.call)
            self.bridge.close_call(state)
            self._headset_down(state, info)
            return
        self._close_recording(state)
        side, cause = classify_end(state, info.lastStatusCode)
        self.calls.pop(state.call_id, None)
        self._unlink_consult(state)
        # Never freed inside its own callback: the loop drops these after libHandleEvents returns.
        self._dead.append(state.call)
        self.bridge.close_call(state)
        quality = dataclasses.asdict(state.quality) if state.quality else None
        self.emit(ev.CallEnded(self.cfg.name, state.call_id, info.lastStatusCode, info.lastReason, side, cause,
                               quality))

    def _unlink_consult(self, state: CallState) -> None:
        """An ended call leaves its consult pairing; ConsultEnded says how."""
        if state.consult_outcome == "transferring":
            return  # the final NOTIFY on the customer call settles it (_settle_consult)
        if state.consult_of:
            customer = self.calls.get(state.consult_of)
            if customer is not None:
                customer.consult_call_id = None
            self.emit(ev.ConsultEnded(self.cfg.name, state.consult_of, state.call_id,
                                      state.consult_outcome or "ended"))
        elif state.consult_call_id:
            consult = self.calls.get(state.consult_call_id)
            if consult is not None and consult.consult_outcome is None:
                consult.consult_of = None
                self.emit(ev.ConsultEnded(self.cfg.name, state.call_id, consult.call_id, "customer_ended"))

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
            # The bridge holds calls too (the headset leg, tap ports whose callbacks point at the call):
            # every Call must be freed before libDestroy, or pjsua asserts in pjsua_call_set_user_data.
            self.bridge.close_call(state)
        self.calls.clear()
        state = None  # the loop variable would keep the last Call alive past libDestroy
        self.bridge.headset = None
        self._dead.clear()
        self.bridge.ports = None  # before libDestroy; the process is going, so the bridge race no longer matters
        self.account.shutdown()
        self.account = None
        stop_endpoint(self.handle, registered=bool(self.cfg.account.registrar))


def _wav_arg(name: str, path: str | None) -> str | None:
    if path is not None and not os.path.isfile(path):
        raise protocol.CommandError(f"{name}: no such file {path!r}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telephony.seat")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the service")
    parser.add_argument("--config", required=True, help="SeatConfig as JSON")
    parser.add_argument("--media-fd", type=int, help="inherited socket for live audio (telephony.media_link)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s seat=%(seat)s %(message)s")
    cfg = SeatConfig.from_json(args.config)
    os.dup2(2, 1)  # pjlib prints its start banner on stdout before any log setting applies
    _add_seat_to_logs(cfg.name)
    channel = Channel(socket.socket(fileno=args.fd))
    media = MediaLink(socket.socket(fileno=args.media_fd)) if args.media_fd is not None else None
    try:
        seat = Seat(cfg, channel.emit, media)
    except pj.Error as e:
        log.error("seat %s cannot start: %s", cfg.name, e.info())
        return 2
    threading.Thread(target=channel.read_forever, name="seat-reader", daemon=True).start()
    if media is not None:
        media.start()
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
