"""Every pjsua2 subclass lives here: the camelCase callbacks copy what they need and hand it on.

SWIG swallows exceptions raised inside a callback, so each body is wrapped and
the error is passed to the owner (which logs it and emits a SeatError event).
The owner objects are plain Python (telephony/seat.py, telephony/sim.py).
"""

from __future__ import annotations

import collections
import ctypes
import logging
from collections.abc import Callable
from typing import Any, Protocol

import pjsua2 as pj

from telephony.frames import FRAME_BYTES, FRAME_MS, SAMPLE_RATE
from telephony.quality import CallQuality, call_quality

log = logging.getLogger("telephony.pjsip")

# pjsip levels: 1 error, 2 warning, 3 info, 4+ debug/trace.
_LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}


class CallOwner(Protocol):
    def on_call_state(self, call: SeatCall) -> None: ...
    def on_media_state(self, call: SeatCall) -> None: ...
    def on_dtmf(self, call: SeatCall, digit: str) -> None: ...
    def on_transfer_status(self, call: SeatCall, code: int, final: bool) -> None: ...
    def on_incoming_call(self, account: SeatAccount, pj_call_id: int, source: str) -> None: ...
    def on_transfer_request(self, call: SeatCall, target: str) -> SeatCall | None: ...
    def on_stream_destroyed(self, call: SeatCall, stream_index: int) -> None: ...
    def on_replace_request(self, call: SeatCall) -> int: ...
    def on_call_replaced(self, call: SeatCall, new_pj_call_id: int) -> SeatCall | None: ...
    def callback_error(self, where: str, error: BaseException, call: SeatCall | None = None) -> None: ...


class LogSink(pj.LogWriter):
    """Routes pjsip's log lines to the `telephony.pjsip` logger instead of stdout."""

    def write(self, entry: Any) -> None:
        try:
            log.log(_LEVELS.get(entry.level, logging.DEBUG), entry.msg.rstrip())
        except Exception:  # noqa: BLE001 - a log line must never take the seat down
            pass


class SeatAccount(pj.Account):
    def __init__(self, owner: CallOwner) -> None:
        super().__init__()
        self.owner = owner

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
        try:
            self.owner.on_incoming_call(self, prm.callId, prm.rdata.srcAddress)
        except Exception as e:  # noqa: BLE001
            self.owner.callback_error("onIncomingCall", e)

    def onIncomingSubscribe(self, prm: Any) -> None:  # noqa: N802
        # No presence: refuse every SUBSCRIBE (pjsua would accept it by default).
        prm.code = 403


class SeatCall(pj.Call):
    """A pjsua2 call tagged with our call id (the UUID that names the call row and recording)."""

    def __init__(self, account: SeatAccount, owner: CallOwner, call_id: str, pj_call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, pj_call_id)
        self.owner = owner
        self.call_id = call_id

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        self._guard("onCallState", self.owner.on_call_state)

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        self._guard("onCallMediaState", self.owner.on_media_state)

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802
        self._guard("onDtmfDigit", lambda call: self.owner.on_dtmf(call, prm.digit))

    def onCallTransferStatus(self, prm: Any) -> None:  # noqa: N802
        code, final = prm.statusCode, prm.finalNotify
        self._guard("onCallTransferStatus", lambda call: self.owner.on_transfer_status(call, code, final))

    def onStreamDestroyed(self, prm: Any) -> None:  # noqa: N802
        # The last moment the stream's RTCP statistics can be read.
        index = prm.streamIdx
        self._guard("onStreamDestroyed", lambda call: self.owner.on_stream_destroyed(call, index))

    def onCallTransferRequest(self, prm: Any) -> None:  # noqa: N802
        # Our own Call object for the new leg, or pjsua2 would make an anonymous one we cannot track.
        try:
            new_call = self.owner.on_transfer_request(self, prm.dstUri)
            if new_call is None:
                prm.statusCode = 603
            else:
                prm.newCall = new_call
        except Exception as e:  # noqa: BLE001
            prm.statusCode = 500
            self.owner.callback_error("onCallTransferRequest", e, self)

    def onCallReplaceRequest(self, prm: Any) -> None:  # noqa: N802
        # An INVITE with Replaces for this call: it skips onIncomingCall (and so the allowed-peer check),
        # so the owner decides here; 0 keeps pjsua's answer (accept).
        try:
            code = self.owner.on_replace_request(self)
            if code:
                prm.statusCode = code
        except Exception as e:  # noqa: BLE001
            prm.statusCode = 500
            self.owner.callback_error("onCallReplaceRequest", e, self)

    def onCallReplaced(self, prm: Any) -> None:  # noqa: N802
        # The replacing call needs our own Call object, or its states and media go unseen.
        try:
            new_call = self.owner.on_call_replaced(self, prm.newCallId)
            if new_call is not None:
                prm.newCall = new_call
        except Exception as e:  # noqa: BLE001
            self.owner.callback_error("onCallReplaced", e, self)

    def _guard(self, where: str, fn: Callable[[SeatCall], None]) -> None:
        try:
            fn(self)
        except Exception as e:  # noqa: BLE001
            self.owner.callback_error(where, e, self)


def stream_quality(call: pj.Call, stream_index: int) -> CallQuality:
    stat = call.getStreamStat(stream_index)  # keep the parent alive while reading its members
    rtcp = stat.rtcp
    rx = rtcp.rxStat
    return call_quality(rx.pkt, rx.loss, rx.jitterUsec.mean, rtcp.rttUsec.mean)


def audio_format() -> Any:
    fmt = pj.MediaFormatAudio()
    fmt.type = pj.PJMEDIA_TYPE_AUDIO
    fmt.clockRate = SAMPLE_RATE
    fmt.channelCount = 1
    fmt.bitsPerSample = 16
    fmt.frameTimeUsec = FRAME_MS * 1000
    return fmt


def _vector_bytes_fast(vec: Any) -> bytes:
    # libstdc++ lays a std::vector out as three pointers: begin, end, end of storage.
    begin, end = ctypes.cast(int(vec.this), ctypes.POINTER(ctypes.c_void_p))[0:2]
    return ctypes.string_at(begin, end - begin) if begin and end and end > begin else b""


def _fast_copy_works() -> bool:
    probe = pj.ByteVector()
    for i in range(7):
        probe.append(i + 1)
    try:
        return _vector_bytes_fast(probe) == bytes(probe)
    except (ValueError, TypeError, OSError):
        return False


# bytes(ByteVector) walks SWIG's iterator element by element: ~0.9 ms per 640-byte frame,
# about 9% of a core per recorded call. Reading the vector's buffer directly takes ~4 us;
# it is checked once against the slow path and not used if the layout differs.
vector_bytes: Callable[[Any], bytes] = _vector_bytes_fast if _fast_copy_works() else bytes


class _MediaFrameLayout(ctypes.Structure):
    """pj::MediaFrame in memory: type, ByteVector buf (libstdc++: begin, end, end of storage), size."""

    _fields_ = [("type", ctypes.c_int), ("begin", ctypes.c_void_p), ("end", ctypes.c_void_p),
                ("capacity_end", ctypes.c_void_p), ("size", ctypes.c_uint)]


_FRAME_BUFFER = ctypes.c_char * FRAME_BYTES


def _frame_bytes_fast(frame: Any) -> bytes | None:
    layout = _MediaFrameLayout.from_address(int(frame.this))
    begin, end = layout.begin, layout.end
    if layout.type != pj.PJMEDIA_FRAME_TYPE_AUDIO or not begin or not end or end <= begin:
        return None
    if end - begin == FRAME_BYTES:
        return _FRAME_BUFFER.from_address(begin).raw
    return ctypes.string_at(begin, end - begin)


def _frame_bytes_slow(frame: Any) -> bytes | None:
    if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
        return vector_bytes(frame.buf)
    return None


def _fast_frame_works() -> bool:
    probes = []
    for kind, payload in ((pj.PJMEDIA_FRAME_TYPE_AUDIO, bytes(range(1, 251)) * 3), (pj.PJMEDIA_FRAME_TYPE_NONE, b"")):
        frame = pj.MediaFrame()
        frame.type = kind
        buf = pj.ByteVector()
        for byte in payload[:FRAME_BYTES]:
            buf.append(byte)
        frame.buf, frame.size = buf, len(payload[:FRAME_BYTES])
        probes.append(frame)
    try:
        return all(_frame_bytes_fast(f) == _frame_bytes_slow(f) for f in probes)
    except (ValueError, TypeError, OSError):
        return False


# Each SWIG attribute read (frame.type, frame.size, frame.buf) costs ~4 us in this wheel's
# SWIG (it formats the type's name on every lookup); reading the MediaFrame's fields in
# place costs one. Per recorded call that is 100 callbacks a second. Checked once against
# the attribute path, and not used if the layout differs.
frame_bytes: Callable[[Any], bytes | None] = _frame_bytes_fast if _fast_frame_works() else _frame_bytes_slow


class FrameTap(pj.AudioMediaPort):
    """A bridge port that receives the mix sent to it, one 20 ms frame per bridge tick.

    Runs on the bridge clock thread: it copies the frame into bytes, hands it on
    and returns; the seat loop writes it.
    """

    # At seat shutdown SWIG may call back through a fresh proxy of the port that never ran __init__:
    # the class default keeps that frame from raising (and logging) in the bridge thread.
    sink: Callable[[Any], None] = staticmethod(lambda _frame: None)

    def __init__(self, name: str, sink: Callable[[Any], None]) -> None:
        super().__init__()
        self.sink = sink
        self.createPort(name, audio_format())

    def onFrameReceived(self, frame: Any) -> None:  # noqa: N802
        try:
            # None for an idle bridge tick, which still counts: it keeps the two channels aligned.
            self.sink(frame_bytes(frame))
        except Exception:  # noqa: BLE001 - never raise into the bridge thread
            log.exception("frame tap %s", self)


class FrameSource(pj.AudioMediaPort):
    """A bridge port that plays frames from a deque (injected audio); silence when it is empty.

    Runs on the bridge clock thread: it pops one frame and returns.
    """

    def __init__(self, name: str, frames: Any) -> None:
        super().__init__()
        self.frames = frames
        self.createPort(name, audio_format())

    def onFrameRequested(self, frame: Any) -> None:  # noqa: N802
        try:
            data = self.frames.popleft()
        except IndexError:
            frame.type = pj.PJMEDIA_FRAME_TYPE_NONE
            return
        try:
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            frame.buf = pj.ByteVector(data)
            frame.size = len(data)
        except Exception:  # noqa: BLE001 - never raise into the bridge thread
            log.exception("frame source %s", self)


def _discard(frame: Any) -> None:
    """The sink of a tap between calls."""


class PortPool:
    """Bridge ports written in Python are reused, never destroyed while the bridge is running.

    pjproject 2.15 removes a port from the conference bridge asynchronously (the
    clock thread applies the removal on its next tick), but ~AudioMediaPort frees
    the port at once: deleting a port while the bridge ticks lets the clock thread
    call into a freed port. Seen as a seat dying with SIGSEGV at a hang-up while
    its other calls were up. A finished call's ports (no longer connected) get a
    sink that drops frames, or an empty source, and wait for the next call; the
    pool never grows past the most ports a seat had at once.
    """

    def __init__(self) -> None:
        self._taps: list[FrameTap] = []
        self._sources: list[FrameSource] = []

    def tap(self, name: str, sink: Callable[[Any], None]) -> FrameTap:
        if not self._taps:
            return FrameTap(name, sink)
        tap = self._taps.pop()
        tap.sink = sink
        return tap

    def source(self, name: str, frames: Any) -> FrameSource:
        if not self._sources:
            return FrameSource(name, frames)
        source = self._sources.pop()
        source.frames = frames
        return source

    def give_back(self, ports: list[Any]) -> None:
        for port in ports:
            if isinstance(port, FrameTap):
                port.sink = _discard
                self._taps.append(port)
            elif isinstance(port, FrameSource):
                port.frames = collections.deque()
                self._sources.append(port)
