"""Per-call bookkeeping inside a seat, and how a finished call is classified."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telephony.quality import CallQuality
from telephony.recording import CallRecording

# Final SIP codes -> (hangup cause, who ended it). Codes not listed: "failed", customer side.
_CAUSES = {
    486: ("busy", "customer"),
    600: ("busy", "customer"),
    603: ("rejected", "customer"),
    403: ("forbidden", "customer"),
    404: ("not_found", "customer"),
    484: ("not_found", "customer"),
    480: ("unavailable", "customer"),
    408: ("no_response", "system"),
    503: ("unreachable", "system"),
}


@dataclass
class CallState:
    call: Any  # adapter.SeatCall; dropped on the seat thread after DISCONNECTED
    call_id: str
    direction: str
    remote_uri: str
    ring_deadline: float | None = None
    answered: bool = False
    # Set when this side ends the call, so the ended event says who hung up.
    local_side: str | None = None
    local_cause: str | None = None
    ringing_codes: set[int] = field(default_factory=set)
    early_media: bool = False
    held_local: bool = False
    held_remote: bool = False
    muted: bool = False
    transfer_target: str | None = None
    # Attended transfer: on the customer call, the consult leg's id; on the consult leg, the customer call's id.
    consult_call_id: str | None = None
    consult_of: str | None = None
    # How the consult leg ended, set by the command that ends it ("cancelled", "transferred").
    consult_outcome: str | None = None
    play_path: str | None = None
    player: Any = None
    # "customer" for a call to or from a customer; "headset" for the leg to the agent's own phone.
    role: str = "customer"
    # The "this call is recorded" prompt played to the customer at answer.
    announce_path: str | None = None
    announcer: Any = None
    # When the seat itself hangs up (monotonic clock): the end of an abandon message (cmd_abandon).
    hangup_deadline: float | None = None
    # An inbound call waiting in a queue: the WAVs it hears (hold music, position announcements) in a loop.
    # While queue_player is set, the headset leg and the agent's microphone are kept off this call.
    queue_files: tuple[str, ...] = ()
    queue_player: Any = None
    # The call's AudioMedia in the bridge, refreshed at every media update (a re-INVITE may move it).
    audio: Any = None
    # Open media taps: tap id -> bridge.MediaTap; tap_ids is read by the bridge clock thread.
    media_taps: dict[int, Any] = field(default_factory=dict)
    tap_ids: tuple[int, ...] = ()
    recording: CallRecording | None = None
    recording_path: str | None = None
    taps: list[Any] = field(default_factory=list)
    quality: CallQuality | None = None

    def mark_local(self, side: str, cause: str) -> None:
        if self.local_side is None:
            self.local_side, self.local_cause = side, cause


def classify_end(state: CallState, sip_code: int) -> tuple[str, str]:
    """Return (side, cause) for the ended event."""
    if state.local_side:
        return state.local_side, state.local_cause or "normal_clearing"
    if state.answered:
        return "customer", "normal_clearing"
    cause, side = _CAUSES.get(sip_code, ("failed", "customer" if 400 <= sip_code < 700 else "system"))
    return side, cause
