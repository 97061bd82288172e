"""Who hears whom in a seat's conference bridge, the recording ports, and media taps.

Per answered customer call:
  customer (the call's audio)  -> right port (recording right channel, taps' "customer" frames), agent's ear
  agent side: the played file, the headset leg, the announcement, barge frames
                               -> the call and the left port (recording left channel, taps' "agent" frames)
The agent's ear is the headset leg when one is up (telephony.seat headset_connect); whisper frames go
only there. Mute cuts the agent's microphone sources; local hold cuts everything the agent side sends,
so a held customer never hears the agent's consult with a colleague.

Everything here runs on the seat's pjsua2 thread except `_frame`, which runs on the bridge clock
thread and only appends to bounded deques.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from telephony import media_link
from telephony.adapter import PortPool
from telephony.calls import CallState
from telephony.frames import SILENCE
from telephony.media_link import MediaLink


@dataclass
class MediaTap:
    """One open tap: its id on the media link and its two injection ports."""

    tap_id: int
    to_agent: Any  # FrameSource: whisper
    to_both: Any  # FrameSource: barge / browser microphone


def _connect(source: Any, sink: Any) -> None:
    if source is not None and sink is not None:
        source.startTransmit(sink)


def _disconnect(source: Any, sink: Any) -> None:
    if source is not None and sink is not None:
        with contextlib.suppress(pj.Error):  # not connected: nothing to undo
            source.stopTransmit(sink)


class SeatBridge:
    def __init__(self, link: MediaLink | None, drop: Callable[[list[Any]], None],
                 calls: Callable[[], list[CallState]]) -> None:
        self.link = link
        self.headset: CallState | None = None  # the agent's phone leg, while it is up
        self._drop = drop  # hands objects to the seat loop, which frees them after libHandleEvents
        self.ports = PortPool()  # the Python-written ports (taps, injection sources): reused, never freed
        self._calls = calls

    # --- ports ------------------------------------------------------------------------

    def open_ports(self, state: CallState) -> None:
        """The left/right bridge ports of a customer call; they feed the recording and the taps."""
        short = state.call_id[:8]
        state.taps = [
            self.ports.tap(f"agent-{short}", lambda f: self._frame(state, 0, f)),
            self.ports.tap(f"cust-{short}", lambda f: self._frame(state, 1, f)),
        ]

    def _frame(self, state: CallState, side: int, frame: bytes | None) -> None:
        """Bridge clock thread: copy the frame on and return."""
        rec = state.recording
        if rec is not None:
            rec.push(rec.left if side == 0 else rec.right, frame)
        if state.tap_ids and self.link is not None:
            kind = media_link.KIND_AGENT if side == 0 else media_link.KIND_CUSTOMER
            for tap_id in state.tap_ids:
                self.link.send(tap_id, kind, frame or SILENCE)

    # --- wiring ------------------------------------------------------------------------

    def microphone(self, state: CallState) -> list[Any]:
        """Sources that stand for the agent's voice in this call: what mute cuts."""
        sources = [state.player]
        if self.headset is not None and self.headset is not state:
            sources.append(self.headset.audio)
        return [s for s in sources if s is not None]

    def wire(self, state: CallState) -> None:
        """(Re)connect a call; run on every media update, since a re-INVITE may rebuild its bridge slot."""
        if state is self.headset:
            for call in self._customers():
                self.wire(call)
            return
        audio = state.audio
        if audio is None or not state.answered or state.role != "customer":
            return
        left, right = (state.taps + [None, None])[:2]
        _connect(audio, right)
        sending = not state.held_local
        # A caller waiting in a queue hears the queue's player, never the seat's headset (another caller's agent).
        queued = state.queue_player is not None
        for source in self.microphone(state):
            self._link(source, (audio, left), sending and not state.muted and not queued)
        # The announcement and barge frames are not the agent's microphone: mute leaves them on.
        for source in [state.announcer, state.queue_player] + [t.to_both for t in state.media_taps.values()]:
            self._link(source, (audio, left), sending)
        ear = self.headset.audio if self.headset is not None else None
        if ear is not None and queued:
            _disconnect(audio, ear)
        elif ear is not None:
            _connect(audio, ear)
            for tap in state.media_taps.values():
                _connect(tap.to_agent, ear)
                _connect(tap.to_both, ear)

    def unlink_queue_player(self, state: CallState, player: Any) -> None:
        """Silence the queue's player at once (it is freed after the seat loop's round)."""
        left = state.taps[0] if state.taps else None
        self._link(player, (state.audio, left), False)

    def _link(self, source: Any, sinks: tuple[Any, ...], on: bool) -> None:
        for sink in sinks:
            (_connect if on else _disconnect)(source, sink)

    def _customers(self) -> list[CallState]:
        return [s for s in self._calls() if s.role == "customer"]

    # --- taps ---------------------------------------------------------------------------

    def open_tap(self, state: CallState, tap_id: int) -> None:
        assert self.link is not None
        tap = MediaTap(
            tap_id,
            self.ports.source(f"whisper-{tap_id}", self.link.inject_buffer(tap_id, media_link.KIND_INJECT_AGENT)),
            self.ports.source(f"barge-{tap_id}", self.link.inject_buffer(tap_id, media_link.KIND_INJECT_BOTH)),
        )
        state.media_taps[tap_id] = tap
        state.tap_ids = tuple(state.media_taps)
        self.wire(state)

    def close_tap(self, state: CallState, tap_id: int) -> None:
        tap = state.media_taps.pop(tap_id)
        state.tap_ids = tuple(state.media_taps)
        if self.link is not None:
            self.link.forget(tap_id)
        self.ports.give_back([tap.to_agent, tap.to_both])

    def close_call(self, state: CallState) -> None:
        """The call is gone: end its taps (KIND_END to the service) and drop its ports."""
        for tap_id in list(state.media_taps):
            self.close_tap(state, tap_id)
        self.ports.give_back(state.taps)
        self._drop([state.player, state.announcer, state.queue_player])
        state.player, state.announcer, state.taps, state.audio = None, None, [], None
        state.queue_player = None
        if self.headset is state:
            self.headset = None
