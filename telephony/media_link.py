"""The binary media channel between a seat process and the service: live call audio out, injected audio in.

One socketpair per seat, next to the JSON command socket, so audio never
queues behind commands or events. Every message has the same size: a 4-byte
header (tap id, kind) and one 20 ms frame (frames.FRAME_BYTES).

seat -> service   KIND_CUSTOMER / KIND_AGENT frames of a tap, 50 per second each; KIND_END when the tap is gone
service -> seat   KIND_INJECT_AGENT / KIND_INJECT_BOTH frames to play into the call

The seat side (`MediaLink`) is fed from the bridge clock thread: a frame is
appended to a bounded drop-oldest deque and a writer thread sends it, so a
slow service never holds up the bridge. A reader thread files injected frames
into per-tap bounded deques that the bridge ports read from.
"""

from __future__ import annotations

import collections
import logging
import socket
import struct
import threading

from telephony.frames import FRAME_BYTES

log = logging.getLogger("telephony.media")

HEADER = struct.Struct("<HBx")
MESSAGE_BYTES = HEADER.size + FRAME_BYTES
KIND_CUSTOMER = 0  # what the customer says (the recording's right channel)
KIND_AGENT = 1  # what the customer hears from the seat side (the recording's left channel)
KIND_END = 2  # the tap is closed (closed by the service, or its call ended); no frame follows
KIND_INJECT_AGENT = 3  # into the agent's ear only (the headset leg): whisper
KIND_INJECT_BOTH = 4  # into the call and the agent's ear: barge, or a browser headset's microphone
DIRECTIONS = {KIND_CUSTOMER: "customer", KIND_AGENT: "agent"}
INJECT_KINDS = {"agent": KIND_INJECT_AGENT, "both": KIND_INJECT_BOTH}
MAX_TAP_ID = 0xFFFF
# Frames waiting to go out, all taps together (2 s of 10 streams) before the oldest is dropped.
OUT_FRAMES = 1000
# Injected frames a tap buffers (2 s): a source running ahead of the bridge clock loses its oldest audio
# instead of adding delay without end.
INJECT_FRAMES = 100


def pack(tap_id: int, kind: int, frame: bytes) -> bytes:
    if len(frame) != FRAME_BYTES:
        frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
    return HEADER.pack(tap_id, kind) + frame


def unpack(message: bytes) -> tuple[int, int, bytes]:
    tap_id, kind = HEADER.unpack_from(message)
    return tap_id, kind, message[HEADER.size:]


class MediaLink:
    """The seat's end: send() from the bridge thread, a writer thread and a reader thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._out: collections.deque[bytes] = collections.deque(maxlen=OUT_FRAMES)
        self._wake = threading.Event()
        self._injects: dict[tuple[int, int], collections.deque[bytes]] = {}
        self.dropped = 0
        self.closed = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._write_forever, name="media-writer", daemon=True).start()
        threading.Thread(target=self._read_forever, name="media-reader", daemon=True).start()

    def send(self, tap_id: int, kind: int, frame: bytes) -> None:
        """Never blocks: called on the bridge clock thread."""
        if len(self._out) == OUT_FRAMES:
            self.dropped += 1
        self._out.append(pack(tap_id, kind, frame))
        self._wake.set()

    def inject_buffer(self, tap_id: int, kind: int) -> collections.deque[bytes]:
        buf: collections.deque[bytes] = collections.deque(maxlen=INJECT_FRAMES)
        self._injects[(tap_id, kind)] = buf
        return buf

    def forget(self, tap_id: int) -> None:
        for kind in INJECT_KINDS.values():
            self._injects.pop((tap_id, kind), None)
        self.send(tap_id, KIND_END, b"")

    def _write_forever(self) -> None:
        while not self.closed.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                while self._out:
                    self.sock.sendall(self._out.popleft())
            except OSError:
                self.closed.set()

    def _read_forever(self) -> None:
        try:
            with self.sock.makefile("rb") as stream:
                while message := stream.read(MESSAGE_BYTES):
                    if len(message) < MESSAGE_BYTES:
                        break
                    tap_id, kind, frame = unpack(message)
                    buf = self._injects.get((tap_id, kind))
                    if buf is not None:
                        buf.append(frame)
        except OSError as e:
            log.error("media link: %s", e)
