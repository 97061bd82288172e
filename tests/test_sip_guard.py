"""The seat's SIP guard (telephony/sip_guard.py) on a real seat process, over UDP and TCP on 127.0.0.1.

pjsua-lib alone drops REGISTER, unknown methods and whatever its parser refuses,
and answers some malformed requests as if they were fine; the guard answers
them as RFC 3261 says. The allowed-peer gate (403) must be untouched, and the
seat must keep answering OPTIONS.
"""

from __future__ import annotations

import socket
import uuid

import pytest
from sip_helpers import free_udp_port

from telephony.config import SeatConfig
from telephony.manager import SeatManager


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["udp", "tcp"])
async def seat(request, tmp_path):
    transport = request.param
    port = free_udp_port() if transport == "udp" else free_tcp_port()
    cfg = SeatConfig(name="seat1", sip_port=port, recordings_dir=str(tmp_path), transport=transport,
                     allowed_peers=("192.0.2.10",))
    manager = SeatManager([cfg])
    await manager.start()
    yield manager, transport, port
    await manager.stop()


def message(method: str, port: int, transport: str, local: int, version: str = "SIP/2.0",
            extra: str = "", cseq_method: str | None = None) -> bytes:
    return (
        f"{method} sip:seat1@127.0.0.1:{port} {version}\r\n"
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:outsider@127.0.0.1:{local}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:seat1@127.0.0.1:{port}>\r\n"
        f"Call-ID: {uuid.uuid4()}\r\nCSeq: 1 {cseq_method or method}\r\n"
        f"Contact: <sip:outsider@127.0.0.1:{local}>\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def exchange(transport: str, port: int, build) -> str:
    """Send one request built for our local port; return the first final response's text ('' if none in 5 s)."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(5)
        s.bind(("127.0.0.1", 0))
        if transport == "tcp":
            s.connect(("127.0.0.1", port))
        data = build(s.getsockname()[1])
        s.sendto(data, ("127.0.0.1", port)) if transport == "udp" else s.sendall(data)
        try:
            while True:
                text = s.recv(65535).decode("utf-8", "replace")
                for response in text.split("SIP/2.0 ")[1:]:
                    if int(response[:3]) >= 200:
                        return "SIP/2.0 " + response
        except TimeoutError:
            return ""


def status(text: str) -> int:
    return int(text.split()[1]) if text else 0


async def test_the_guard_answers_what_pjsua_drops_and_the_seat_keeps_working(seat):
    manager, transport, port = seat
    register = exchange(transport, port, lambda local: message("REGISTER", port, transport, local))
    assert status(register) == 405 and "\r\nAllow: " in register and "INVITE" in register
    assert ";tag=" in register.split("\r\nTo: ", 1)[1].split("\r\n", 1)[0]
    assert status(exchange(transport, port, lambda local: message("FOO", port, transport, local))) == 501
    # Refused by pjsip's parser: answered from the drop-data callback.
    assert status(exchange(transport, port,
                           lambda local: message("OPTIONS", port, transport, local, version="SIP/7.0"))) == 505
    # Parsed by pjsip, which would answer 200: CSeq names another method.
    assert status(exchange(transport, port,
                           lambda local: message("OPTIONS", port, transport, local, cseq_method="INVITE"))) == 400
    assert status(exchange(transport, port,
                           lambda local: message("OPTIONS", port, transport, local, extra="Require: nope\r\n"))) == 420
    assert status(exchange(transport, port, lambda local: message("OPTIONS", port, transport, local))) == 200


async def test_an_invite_from_an_unlisted_peer_still_gets_403(seat):
    # Without SDP on purpose: refused from inside onIncomingCall, such an INVITE aborted the seat (the
    # 403 still went out, the manager restarted the seat, and the count below read 0).
    manager, transport, port = seat
    assert status(exchange(transport, port, lambda local: message("INVITE", port, transport, local))) == 403
    assert (await manager.seat("seat1").ping())["rejected_incoming"] == 1
