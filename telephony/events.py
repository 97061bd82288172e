"""Call and seat events: frozen dataclasses, the only thing that leaves the pjsua2 thread.

Each event is one JSON line on the seat socket (`to_dict` / `from_dict`), so
the service never sees a `pj.*` object.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Event:
    seat: str


@dataclass(frozen=True)
class SeatReady(Event):
    sip_port: int
    pid: int
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class SeatCrashed(Event):
    """Emitted by the manager (not the seat) for a seat process that died; call_ids were still up."""

    call_ids: tuple[str, ...]
    exit_code: int | None
    recordings: tuple[str, ...] = ()
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallStarted(Event):
    call_id: str
    direction: str
    remote_uri: str
    sip_call_id: str
    ts: float = field(default_factory=_now)
    # The To URI of an inbound call (which line was called); empty for outbound calls.
    local_uri: str = ""


@dataclass(frozen=True)
class IncomingRejected(Event):
    """An INVITE from a peer or for a number that is not configured; answered 403."""

    source: str
    from_uri: str
    to_uri: str
    sip_code: int
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallRinging(Event):
    call_id: str
    sip_code: int
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallEarlyMedia(Event):
    call_id: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallAnswered(Event):
    call_id: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallHeld(Event):
    call_id: str
    held: bool
    by: str  # "local" or "remote"
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallMuted(Event):
    call_id: str
    muted: bool
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class DtmfReceived(Event):
    call_id: str
    digit: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallTransferred(Event):
    call_id: str
    target: str
    sip_code: int
    ts: float = field(default_factory=_now)
    # Set for an attended transfer: the consult leg whose far end now has the customer.
    consult_call_id: str | None = None


@dataclass(frozen=True)
class ConsultStarted(Event):
    """The agent put call_id on hold and is calling target on a second leg (attended transfer, step 1)."""

    call_id: str
    consult_call_id: str
    target: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class ConsultEnded(Event):
    """The consult leg is gone: outcome "transferred", "cancelled", "ended" (its far end hung up) or
    "customer_ended" (the customer hung up first; the consult leg stays up as an ordinary call)."""

    call_id: str
    consult_call_id: str
    outcome: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class RecordingStarted(Event):
    call_id: str
    path: str
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class RecordingClosed(Event):
    call_id: str
    path: str
    state: str  # "complete" or "failed_storage"
    sha256: str | None
    duration_seconds: float
    lost_frames: int
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class CallEnded(Event):
    call_id: str
    sip_code: int
    reason: str
    side: str  # "agent", "customer" or "system" (the crm.calls hangup_side values)
    cause: str
    # RTCP figures of the audio stream (quality.CallQuality as a dict); None when no media flowed.
    quality: dict[str, Any] | None = None
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class HeadsetState(Event):
    """The leg to the agent's own phone: "connecting", "connected" or "disconnected" (with code and cause).

    Not a customer call: it has no call row, recording or CallStarted/CallEnded events.
    """

    state: str
    uri: str
    call_id: str
    sip_code: int | None = None
    cause: str | None = None
    ts: float = field(default_factory=_now)


@dataclass(frozen=True)
class SeatError(Event):
    """An exception inside a pjsua2 callback (SWIG would otherwise swallow it)."""

    where: str
    error: str
    call_id: str | None = None
    ts: float = field(default_factory=_now)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        SeatReady, SeatCrashed, CallStarted, IncomingRejected, CallRinging, CallEarlyMedia, CallAnswered,
        CallHeld, CallMuted, DtmfReceived, CallTransferred, ConsultStarted, ConsultEnded, RecordingStarted,
        RecordingClosed, CallEnded, HeadsetState, SeatError,
    )
}


def to_dict(event: Event) -> dict[str, Any]:
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def from_dict(data: dict[str, Any]) -> Event:
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    if "call_ids" in data:
        data["call_ids"] = tuple(data["call_ids"])
    if "recordings" in data:
        data["recordings"] = tuple(data["recordings"])
    return cls(**data)
