"""The seat's end of its socket: a reader thread turns command lines into a queue; writes are locked.

The pjsua2 thread never blocks on the socket for reading; replies and events
are small and go to a local peer, so a plain sendall is enough.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading

from telephony import events as ev
from telephony import protocol

log = logging.getLogger("telephony.seat")


class Channel:
    """The seat's end of the socket: a reader thread feeding the command queue, locked writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.commands: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            with self._lock:
                self.sock.sendall(data)
        except OSError:
            self.closed.set()

    def emit(self, event: ev.Event) -> None:
        self.send(protocol.event(event))

    def read_forever(self) -> None:
        with self.sock.makefile("rb") as lines:
            for line in lines:
                try:
                    msg = protocol.decode(line[: protocol.MAX_LINE])
                    self.commands.put((msg["id"], msg["cmd"], msg.get("args") or {}, self.send))
                except (ValueError, KeyError, TypeError):
                    log.error("bad command line %r", line[:200])
        # The service went away: a seat without a service shuts down cleanly.
        self.closed.set()
        self.commands.put((0, "shutdown", {}, lambda _data: None))
