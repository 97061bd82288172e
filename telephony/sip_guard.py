"""The seat's SIP guard: answers what pjsua-lib drops or mis-answers, with the errors RFC 3261 wants.

pjsua2 has no Python hook below the call layer, but the wheel's _pjsua2 library
exports pjsip's C API, so this module talks to it through ctypes:

- an early pjsip module (priority 15: after the transport layer, before the
  transaction layer) runs telephony.sip_rules.screen() on every request pjsip
  parsed and answers 400/420/406 statelessly, taking the request away from
  the other layers;
- a last module (priority 1000) answers 405 (with Allow) or 501 for requests
  no pjsua module took (REGISTER, unknown methods), which pjsua only logs;
- the transport manager's drop-data callback gets what pjsip's parser refused
  and answers it (505/416/405/501/400) when it has a Via to answer to.

Answers go out as raw bytes through pjsip_tpmgr_send_raw: on the connection the
request came on (TCP/TLS, RFC 3261 18.2.2) or to the UDP address 18.2.2 / RFC
3581 name. Every callback runs on the seat's one pjsua2 thread, inside
libHandleEvents. A callback never raises into C: any error is logged and the
message is left to pjsip, so the guard can stop answering but not stop a seat.

Struct layouts are pjproject 2.15's (pjsip/sip_module.h, sip_transport.h,
pj/ioqueue.h): pjsip_module, pjsip_tp_dropped_data, pjsip_tpselector, and the
head of pjsip_rx_data up to msg_info.len. The rx_data reads are checked before
use (the transport pointer and the source address pjsip printed must agree).
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
from ctypes import CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_int, c_long, c_size_t, c_ssize_t, c_void_p
from dataclasses import dataclass, field

import pjsua2 as pj

from telephony import sip_rules

log = logging.getLogger("telephony.sip_guard")

PJSIP_MAX_PKT_LEN = 4000  # pjsip/sip_config.h default, which the wheel keeps
PJ_INET6_ADDRSTRLEN = 46
# sizeof(pj_ioqueue_op_key_t) in pointers for this wheel: measured (pkt_info.timestamp at offset 304, the
# packet at 320, src_name at 4368); _source() re-checks the layout on every use.
IOQUEUE_OP_KEY_WORDS = 35
PRIORITY_EARLY = 15  # PJSIP_MOD_PRIORITY_TSX_LAYER (16) - 1
PRIORITY_LAST = 1000  # after every pjsua module (PJSIP_MOD_PRIORITY_APPLICATION is 64)
PJSIP_H_ALLOW, PJSIP_H_SUPPORTED = 4, 36
PJSIP_TPSELECTOR_TRANSPORT = 1
DEFAULT_ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"

RX_CB = CFUNCTYPE(c_int, c_void_p)


class PjStr(Structure):
    _fields_ = [("ptr", c_char_p), ("slen", c_ssize_t)]


class PjsipModule(Structure):
    _fields_ = [("prev", c_void_p), ("next", c_void_p), ("name", PjStr), ("id", c_int), ("priority", c_int),
                ("load", c_void_p), ("start", c_void_p), ("stop", c_void_p), ("unload", c_void_p),
                ("on_rx_request", RX_CB), ("on_rx_response", c_void_p), ("on_tx_request", c_void_p),
                ("on_tx_response", c_void_p), ("on_tsx_state", c_void_p)]


class DroppedData(Structure):  # pjsip_tp_dropped_data
    _fields_ = [("tp", c_void_p), ("data", c_void_p), ("len", c_size_t), ("status", c_int)]


DROP_CB = CFUNCTYPE(None, POINTER(DroppedData))


class TpSelector(Structure):  # pjsip_tpselector: type, disable_connection_reuse, union u
    _fields_ = [("type", c_int), ("disable_connection_reuse", c_int), ("transport", c_void_p)]


class RxDataHead(Structure):
    """pjsip_rx_data from tp_info to msg_info.len (tp_info, pkt_info, then the first msg_info fields)."""
    _fields_ = [("pool", c_void_p), ("transport", c_void_p), ("tp_data", c_void_p),
                ("op_key", c_void_p * IOQUEUE_OP_KEY_WORDS),
                ("ts_sec", c_long), ("ts_msec", c_long), ("packet", c_char * PJSIP_MAX_PKT_LEN),
                ("zero", ctypes.c_uint32), ("len", c_ssize_t), ("src_addr", ctypes.c_uint8 * 28),
                ("src_addr_len", c_int), ("src_name", c_char * PJ_INET6_ADDRSTRLEN), ("src_port", c_int),
                ("msg_buf", c_void_p), ("msg_len", c_int)]


PACKET_OFFSET = RxDataHead.packet.offset


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(pj._pjsua2.__file__)  # already loaded: the same pjsip instance pjsua2 runs
    lib.pjsua_get_pjsip_endpt.restype = c_void_p
    lib.pjsip_endpt_get_tpmgr.restype = c_void_p
    lib.pjsip_endpt_get_tpmgr.argtypes = [c_void_p]
    lib.pjsip_endpt_register_module.argtypes = [c_void_p, c_void_p]
    lib.pjsip_tpmgr_set_drop_data_cb.argtypes = [c_void_p, DROP_CB]
    lib.pjsip_endpt_get_capability.restype = c_void_p
    lib.pjsip_endpt_get_capability.argtypes = [c_void_p, c_int, c_void_p]
    lib.pjsip_hdr_print_on.argtypes = [c_void_p, c_char_p, c_size_t]
    lib.pjsip_tpmgr_send_raw.argtypes = [c_void_p, c_int, c_void_p, c_void_p, c_char_p, c_size_t, c_void_p,
                                         c_int, c_void_p, c_void_p]
    return lib


def _source(rx: RxDataHead) -> tuple[str, int] | None:
    """The packet's source from pj_sockaddr, only where pjsip's own printed copy agrees (the layout check)."""
    raw = bytes(rx.src_addr)
    family, port = struct.unpack_from("=H", raw)[0], struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_INET:
        ip = socket.inet_ntop(socket.AF_INET, raw[4:8])
    elif family == socket.AF_INET6:
        ip = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    else:
        return None
    name = rx.src_name.decode("ascii", "replace")
    return (ip, port) if name == ip and rx.src_port == port else None


def _sockaddr_in(ip: str, port: int) -> ctypes.Array:
    raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(ip) + bytes(8)
    return ctypes.create_string_buffer(raw, len(raw))


@dataclass
class SipGuard:
    transport_type: int  # pj.PJSIP_TRANSPORT_UDP / TCP / TLS: the seat's one transport
    lib: ctypes.CDLL = field(default_factory=_lib)
    allow: frozenset[str] = frozenset()
    allow_line: str = f"Allow: {DEFAULT_ALLOW}"
    supported: frozenset[str] = frozenset()
    answered: dict[int, int] = field(default_factory=dict)  # status code -> how many sent
    _keep: list = field(default_factory=list)  # modules and callbacks pjsip points at: alive until exit

    @property
    def datagram(self) -> bool:
        return self.transport_type == pj.PJSIP_TRANSPORT_UDP

    def install(self) -> None:
        endpt = self.lib.pjsua_get_pjsip_endpt()
        self.endpt, self.tpmgr = endpt, self.lib.pjsip_endpt_get_tpmgr(endpt)
        allow = self._capability(PJSIP_H_ALLOW) or DEFAULT_ALLOW
        self.allow = frozenset(sip_rules._tokens([allow]))
        self.allow_line = f"Allow: {allow}"
        self.supported = frozenset(t.lower() for t in sip_rules._tokens([self._capability(PJSIP_H_SUPPORTED)]))
        self._register(b"mod-seat-guard-early", PRIORITY_EARLY, self._on_rx_early)
        self._register(b"mod-seat-guard-last", PRIORITY_LAST, self._on_rx_last)
        drop_cb = DROP_CB(self._on_dropped)
        self._keep.append(drop_cb)
        self.lib.pjsip_tpmgr_set_drop_data_cb(self.tpmgr, drop_cb)

    def _capability(self, htype: int) -> str:
        """The endpoint's own Allow / Supported header value, as pjsua filled it in at libInit."""
        hdr = self.lib.pjsip_endpt_get_capability(self.endpt, htype, None)
        if not hdr:
            return ""
        buf = ctypes.create_string_buffer(1024)
        n = self.lib.pjsip_hdr_print_on(hdr, buf, len(buf))
        text = buf.raw[:n].decode("ascii", "replace") if n > 0 else ""
        return text.partition(":")[2].strip()

    def _register(self, name: bytes, priority: int, handler) -> None:
        name_buf = ctypes.create_string_buffer(name)
        mod = PjsipModule(name=PjStr(ctypes.cast(name_buf, c_char_p), len(name)), id=-1, priority=priority,
                          on_rx_request=RX_CB(handler))
        status = self.lib.pjsip_endpt_register_module(self.endpt, ctypes.byref(mod))
        if status != 0:
            raise RuntimeError(f"pjsip_endpt_register_module({name.decode()}) failed: {status}")
        self._keep += [name_buf, mod]

    # --- callbacks (pjsip's thread; never raise) --------------------------------

    def _on_rx_early(self, rdata: int) -> int:
        return self._guarded(rdata, lambda req: sip_rules.screen(req, self.datagram, self.supported))

    def _on_rx_last(self, rdata: int) -> int:
        return self._guarded(rdata, lambda req: sip_rules.unserved(req, self.allow, self.allow_line))

    def _guarded(self, rdata: int, decide) -> int:
        try:
            rx = RxDataHead.from_address(rdata)
            source = _source(rx)
            packet = rdata + PACKET_OFFSET
            if source is None or not packet <= (rx.msg_buf or 0) < packet + PJSIP_MAX_PKT_LEN:
                log.warning("sip guard: unexpected pjsip_rx_data layout; request left to pjsip")
                return 0
            req = sip_rules.parse(ctypes.string_at(rx.msg_buf, max(0, min(rx.msg_len, PJSIP_MAX_PKT_LEN))))
            verdict = decide(req) if req else None
            return int(bool(verdict) and self._send(req, verdict, rx.transport, source))
        except Exception:  # noqa: BLE001 - an exception must not unwind into pjsip's C stack
            log.exception("sip guard: request left to pjsip")
            return 0

    def _on_dropped(self, dropped) -> None:
        try:
            dd = dropped.contents
            if not dd.data or not dd.len or dd.len > PJSIP_MAX_PKT_LEN:
                return
            req = sip_rules.parse(ctypes.string_at(dd.data, dd.len))
            verdict = sip_rules.unparsed(req, self.allow, self.allow_line) if req else None
            if verdict:
                self._send(req, verdict, dd.tp, self._dropped_source(dd) if self.datagram else None)
        except Exception:  # noqa: BLE001
            log.exception("sip guard: dropped message left unanswered")

    def _dropped_source(self, dd: DroppedData) -> tuple[str, int] | None:
        """Where the dropped bytes came from: pjsip_tp_dropped_data has no address, its rx_data does.

        The bytes lie in rx_data.pkt_info.packet; for a datagram they start it. Used only where the
        rx_data found that way names the same transport and length and a consistent source.
        """
        rx = RxDataHead.from_address(dd.data - PACKET_OFFSET)
        if rx.transport != dd.tp or rx.len != dd.len:
            return None
        return _source(rx)

    def _send(self, req: sip_rules.Request, verdict: sip_rules.Verdict, tp: int,
              source: tuple[str, int] | None) -> bool:
        src_ip, src_port = source or ("", 0)
        data = sip_rules.build_response(req, verdict, src_ip, src_port)
        if self.datagram:
            if not source or ":" in src_ip:
                log.warning("sip guard: no IPv4 source for a %d answer; not sent", verdict[0])
                return False
            sel, dest = None, sip_rules.udp_destination(req, src_ip, src_port)
        else:
            # Back on the connection the request came on; the address only satisfies tcp_send_msg's check.
            sel = ctypes.byref(TpSelector(PJSIP_TPSELECTOR_TRANSPORT, 0, tp))
            dest = (src_ip if src_ip and ":" not in src_ip else "127.0.0.1", src_port)
        addr = _sockaddr_in(*dest)
        status = self.lib.pjsip_tpmgr_send_raw(self.tpmgr, self.transport_type, sel, None, data, len(data),
                                               addr, len(addr), None, None)
        if status != 0:
            log.warning("sip guard: sending %d to %s failed (pj status %d)", verdict[0], dest, status)
            return False
        self.answered[verdict[0]] = self.answered.get(verdict[0], 0) + 1
        log.info("sip guard: %s %s -> %d", req.method, req.first("call-id"), verdict[0])
        return True


def install_guard(transport: str) -> SipGuard:
    """Register the guard in this process's pjsua2 endpoint (after libInit and the transport)."""
    types = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}
    guard = SipGuard(types[transport])
    guard.install()
    return guard
