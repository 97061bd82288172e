"""Which error a seat owes a SIP request that pjsip would drop or mis-answer, decided from its raw bytes.

No pjsip here: telephony.sip_guard hands these functions the bytes of a request
(parsed by pjsip or dropped by its parser) and sends what they build. The
rules are the RFC 3261 ones pjsua-lib leaves out, in the order a UAS applies
them (8.2, 18.2.2, 18.3) and as RFC 4475 tests them:

- screen(): a request pjsip parsed, before any layer sees it: repeated
  single-value headers, a CSeq method that is not the request's, a
  Content-Length past the end of a datagram -> 400; an unknown Require
  option -> 420 with Unsupported; an INVITE whose Accept rules out SDP -> 406;
  an INVITE offering IPv6 media (the seat's media is IPv4 only) -> 488;
- unserved(): a request no pjsua module took -> 405 with Allow (a method SIP
  defines but the seat does not serve, e.g. REGISTER) or 501 (unknown method);
- unparsed(): a request pjsip's parser refused -> 505 (not SIP/2.0), 416
  (URI scheme other than sip/sips/tel), 400 (no URI, bad host, bad CSeq),
  405/501 as above, else 400.

ACK is never answered (RFC 3261 17.2.3), nor is anything without a Via to answer to.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "l": "content-length", "m": "contact",
           "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding"}
# Headers a request carries once (RFC 3261 7.3.1: only comma-list headers may repeat).
SINGLE = ("to", "from", "call-id", "cseq", "content-length", "max-forwards")
KNOWN_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
                           "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"})
REASONS = {400: "Bad Request", 405: "Method Not Allowed", 406: "Not Acceptable", 416: "Unsupported URI Scheme",
           420: "Bad Extension", 488: "Not Acceptable Here", 501: "Not Implemented", 505: "Version Not Supported"}
SDP_ACCEPTED = ("application/sdp", "application/*", "*/*")
CSEQ_MAX = 2**31  # RFC 3261 8.1.1.5: the sequence number is below 2**31
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")  # RFC 3986 3.1
_VIA = re.compile(r"\s*[^/\s]+\s*/\s*[^/\s]+\s*/\s*[^\s;]+\s+(\[[^\]]*\]|[^\s;:,]+)\s*(?::\s*(\d+))?\s*(.*)", re.S)

Verdict = tuple[int, list[str]]  # status code, extra header lines


@dataclass
class Request:
    method: str
    uri: str
    version: str
    headers: list[tuple[str, str]]  # (lower-case long name, value), unfolded, in order
    body: bytes

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def first(self, name: str) -> str:
        values = self.all(name)
        return values[0] if values else ""

    def vias(self) -> list[str]:
        return [part.strip() for value in self.all("via") for part in value.split(",") if part.strip()]


def parse(raw: bytes) -> Request | None:
    """A request's start line and headers, leniently (the point is to answer what pjsip could not parse)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = re.split(r"\r?\n", head.decode("utf-8", "replace"))
    parts = lines[0].split()
    if len(parts) < 3 or parts[0].upper().startswith("SIP/"):
        return None  # a response, or no request line
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation (RFC 3261 7.3.1)
            headers[-1] = (headers[-1][0], f"{headers[-1][1]} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers.append((COMPACT.get(key, key), value.strip()))
    return Request(parts[0], " ".join(parts[1:-1]), parts[-1], headers, body if sep else b"")


def _cseq_ok(req: Request) -> bool:
    parts = req.first("cseq").split()
    return (len(req.all("cseq")) == 1 and len(parts) == 2 and parts[0].isdigit() and int(parts[0]) < CSEQ_MAX
            and parts[1] == req.method)


def _tokens(values: list[str]) -> list[str]:
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


def screen(req: Request, datagram: bool, supported: frozenset[str]) -> Verdict | None:
    """For a request pjsip parsed: the error RFC 3261 / 4475 want and pjsua would not send, or None."""
    if req.method == "ACK" or not req.vias():
        return None
    if any(len(req.all(name)) > 1 for name in SINGLE) or not _cseq_ok(req):
        return 400, []
    length = req.first("content-length")
    if datagram and length.isdigit() and int(length) > len(req.body):
        return 400, []  # RFC 3261 18.3: a datagram shorter than its Content-Length
    unknown = [t for t in _tokens(req.all("require")) if t.lower() not in supported]
    if unknown and req.method != "CANCEL":
        return 420, [f"Unsupported: {', '.join(unknown)}"]
    accepted = [t.split(";")[0].strip().lower() for t in _tokens(req.all("accept"))]
    if req.method == "INVITE" and accepted and not any(t in SDP_ACCEPTED for t in accepted):
        return 406, ["Accept: application/sdp"]  # RFC 4475 3.3.14: our answer would carry SDP
    if req.method == "INVITE" and _sdp_ipv6(req):
        # RFC 3264 / 5118 4.6, 4.8: refuse media the seat cannot reach (pjsua would answer 500 or 400).
        return 488, ['Warning: 301 - "Incompatible network address format: IPv6"']
    return None


def unserved(req: Request, allow: frozenset[str], allow_line: str) -> Verdict | None:
    """For a request no module took: 405 for SIP methods the seat does not serve, 501 for unknown ones."""
    if req.method == "ACK" or req.method in allow or not req.vias():
        return None
    return (405, [allow_line]) if req.method in KNOWN_METHODS else (501, [])


def unparsed(req: Request, allow: frozenset[str], allow_line: str) -> Verdict | None:
    """For a request pjsip's parser refused (RFC 3261 8.2.2, 8.2.6, 18.3)."""
    if req.method == "ACK" or not req.vias():
        return None
    if req.version.upper() != "SIP/2.0":
        return 505, []
    scheme, colon, _ = req.uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return 400, []  # not a URI at all (e.g. one in <>)
    if scheme.lower() not in ("sip", "sips", "tel"):
        return 416, []
    if not _uri_host_ok(req.uri) or not _cseq_ok(req):
        return 400, []
    return unserved(req, allow, allow_line) or (400, [])


def _uri_host_ok(uri: str) -> bool:
    """A sip/sips Request-URI's host is a name, an IPv4 address or a bracketed IPv6 one (RFC 3261 25.1, 5118 4.2)."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() not in ("sip", "sips"):
        return True
    hostport = re.split(r"[;?]", rest.rsplit("@", 1)[-1], maxsplit=1)[0]
    return bool(re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", hostport))


def _sdp_ipv6(req: Request) -> bool:
    """An SDP offer with an IPv6 connection address (the seat's media is IPv4 only)."""
    if req.first("content-type").split(";")[0].strip().lower() != "application/sdp":
        return False
    return bool(re.search(rb"^c\s*=\s*IN\s+IP6\s", req.body, re.M | re.I))


def via_params(via: str) -> tuple[str, int | None, dict[str, str]] | None:
    """The sent-by host and port and the parameters of one Via value."""
    m = _VIA.match(via)
    if not m:
        return None
    params = {}
    for item in m.group(3).split(";")[1:]:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip()
    return m.group(1).strip("[]"), int(m.group(2)) if m.group(2) else None, params


def udp_destination(req: Request, src_ip: str, src_port: int) -> tuple[str, int]:
    """RFC 3261 18.2.2 + RFC 3581: the source address, at the rport or else the sent-by port (default 5060)."""
    parsed = via_params(req.vias()[0])
    if parsed is None:
        return src_ip, src_port
    _, port, params = parsed
    return (src_ip, src_port) if "rport" in params else (src_ip, port or 5060)


def _top_via(via: str, src_ip: str, src_port: int) -> str:
    parsed = via_params(via)
    if parsed is None or not src_ip:
        return via
    _, _, params = parsed
    if "rport" in params and not params["rport"]:
        via = re.sub(r";\s*rport\s*(?=;|$)", f";rport={src_port}", via, count=1, flags=re.I)
    return via if "received" in params else f"{via};received={src_ip}"


def _with_tag(to: str) -> str:
    outside = to.rsplit(">", 1)[-1] if ">" in to else to
    return to if re.search(r";\s*tag\s*=", outside, re.I) else f"{to};tag={secrets.token_hex(6)}"


def build_response(req: Request, verdict: Verdict, src_ip: str, src_port: int) -> bytes:
    """RFC 3261 8.2.6.2: Vias (the top one with received/rport), From, To (+tag), Call-ID and CSeq copied."""
    code, extra = verdict
    vias = req.vias()
    lines = [f"SIP/2.0 {code} {REASONS[code]}", f"Via: {_top_via(vias[0], src_ip, src_port)}"]
    lines += [f"Via: {via}" for via in vias[1:]]
    for name, label in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
        value = req.first(name)
        if value:
            lines.append(f"{label}: {_with_tag(value) if name == 'to' else value}")
    lines += [*extra, "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode("utf-8", "replace")
