"""telephony.sip_rules: which error the seat's SIP guard owes a request, from its raw bytes (no pjsip)."""

from __future__ import annotations

from telephony import sip_rules as rules

ALLOW = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"})
ALLOW_LINE = "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS"
SUPPORTED = frozenset({"replaces", "100rel", "timer"})


def request(first: str = "OPTIONS sip:seat@127.0.0.1 SIP/2.0", *extra: str, cseq: str = "1 OPTIONS",
            via: str = "SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bK1", body: str = "") -> rules.Request:
    head = [first, f"Via: {via}", "From: <sip:a@example.net>;tag=1", "To: <sip:seat@127.0.0.1>",
            "Call-ID: c1", f"CSeq: {cseq}", *extra, f"Content-Length: {len(body)}"]
    parsed = rules.parse(("\r\n".join(head) + "\r\n\r\n" + body).encode())
    assert parsed is not None
    return parsed


def test_a_well_formed_request_is_left_to_pjsip():
    assert rules.screen(request(), datagram=True, supported=SUPPORTED) is None
    assert rules.screen(request("INVITE sip:s@h SIP/2.0", "Require: 100rel", "Accept: application/sdp",
                                cseq="1 INVITE"), datagram=True, supported=SUPPORTED) is None


def test_screen_refuses_what_rfc_4475_calls_malformed():
    assert rules.screen(request("OPTIONS sip:s@h SIP/2.0", "Call-ID: c2"), True, SUPPORTED) == (400, [])
    assert rules.screen(request(cseq="1 INVITE"), True, SUPPORTED) == (400, [])
    short = request("INVITE sip:s@h SIP/2.0", cseq="1 INVITE")
    short.headers.append(("content-length", "9999"))
    short.headers = [h for h in short.headers if h != ("content-length", "0")]
    assert rules.screen(short, datagram=True, supported=SUPPORTED) == (400, [])
    assert rules.screen(short, datagram=False, supported=SUPPORTED) is None  # a stream waits for the rest


def test_screen_answers_unknown_extensions_accept_and_ipv6_media():
    assert rules.screen(request("OPTIONS sip:s@h SIP/2.0", "Require: foo, timer"), True, SUPPORTED) == (
        420, ["Unsupported: foo"])
    invite = request("INVITE sip:s@h SIP/2.0", "Accept: text/plain", cseq="1 INVITE")
    assert rules.screen(invite, True, SUPPORTED)[0] == 406
    v6 = request("INVITE sip:s@h SIP/2.0", "Content-Type: application/sdp", cseq="1 INVITE",
                 body="v=0\r\nc=IN IP6 2001:db8::1\r\n")
    assert rules.screen(v6, True, SUPPORTED)[0] == 488


def test_ack_and_requests_without_via_are_never_answered():
    ack = request("ACK sip:s@h SIP/2.0", "Call-ID: c2", cseq="1 ACK")
    assert rules.screen(ack, True, SUPPORTED) is None and rules.unparsed(ack, ALLOW, ALLOW_LINE) is None
    no_via = rules.parse(b"FOO sip:s@h SIP/2.0\r\nCSeq: 1 FOO\r\n\r\n")
    assert rules.unserved(no_via, ALLOW, ALLOW_LINE) is None


def test_unserved_methods_get_405_with_allow_and_unknown_ones_501():
    assert rules.unserved(request("REGISTER sip:h SIP/2.0", cseq="1 REGISTER"), ALLOW, ALLOW_LINE) == (
        405, [ALLOW_LINE])
    assert rules.unserved(request("FOO sip:h SIP/2.0", cseq="1 FOO"), ALLOW, ALLOW_LINE) == (501, [])
    assert rules.unserved(request(), ALLOW, ALLOW_LINE) is None


def test_unparsed_requests_get_the_specific_error_first():
    assert rules.unparsed(request("OPTIONS sip:s@h SIP/7.0"), ALLOW, ALLOW_LINE)[0] == 505
    assert rules.unparsed(request("OPTIONS soap.beep://h:3002 SIP/2.0"), ALLOW, ALLOW_LINE)[0] == 416
    assert rules.unparsed(request("OPTIONS <sip:s@h> SIP/2.0"), ALLOW, ALLOW_LINE)[0] == 400
    assert rules.unparsed(request("REGISTER sip:2001:db8::10 SIP/2.0", cseq="1 REGISTER"), ALLOW,
                          ALLOW_LINE)[0] == 400
    assert rules.unparsed(request("REGISTER sip:h SIP/2.0", cseq="99999999999 REGISTER"), ALLOW,
                          ALLOW_LINE)[0] == 400
    assert rules.unparsed(request("REGISTER sip:h SIP/2.0", cseq="1 REGISTER"), ALLOW, ALLOW_LINE)[0] == 405
    assert rules.unparsed(request(), ALLOW, ALLOW_LINE) == (400, [])


def test_the_response_copies_the_dialog_headers_and_marks_the_top_via():
    req = request("OPTIONS sip:s@h SIP/2.0", via="SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bK1;rport, "
                  "SIP/2.0/UDP 192.0.2.6;branch=z9hG4bK0")
    text = rules.build_response(req, (405, [ALLOW_LINE]), "127.0.0.1", 40000).decode()
    lines = text.split("\r\n")
    assert lines[0] == "SIP/2.0 405 Method Not Allowed"
    assert lines[1] == "Via: SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bK1;rport=40000;received=127.0.0.1"
    assert lines[2] == "Via: SIP/2.0/UDP 192.0.2.6;branch=z9hG4bK0"
    assert "From: <sip:a@example.net>;tag=1" in lines and "Call-ID: c1" in lines and "CSeq: 1 OPTIONS" in lines
    assert any(line.startswith("To: <sip:seat@127.0.0.1>;tag=") for line in lines)
    assert ALLOW_LINE in lines and text.endswith("Content-Length: 0\r\n\r\n")


def test_udp_answers_go_where_rfc_3261_and_3581_say():
    assert rules.udp_destination(request(), "127.0.0.1", 40000) == ("127.0.0.1", 5070)
    assert rules.udp_destination(request(via="SIP/2.0/UDP [2001:db8::1];branch=z9"), "127.0.0.1", 4) == (
        "127.0.0.1", 5060)
    assert rules.udp_destination(request(via="SIP/2.0/UDP h:5070;rport;branch=z9"), "127.0.0.1", 4) == (
        "127.0.0.1", 4)
