"""One pjsua2 Endpoint per process, configured for a seat or the sim peer.

Single-threaded on purpose: threadCnt = 0 and mainThreadOnly = True make every
callback run inside libHandleEvents() on the caller's thread (the media clock
thread still runs the bridge; see adapter.FrameTap).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from telephony.adapter import LogSink
from telephony.config import SUPPORTED_CODECS, SeatConfig
from telephony.frames import FRAME_MS, SAMPLE_RATE

log = logging.getLogger("telephony.endpoint")

# The wheel is built with PJSUA_MAX_CALLS = 4; asking for more fails at libInit.
MAX_CALLS = 4
# The first pjproject release with the security fixes the PyPI wheel (2.15.1) lacks.
FIXED_RELEASE = (2, 16)
_TRANSPORTS = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}


@dataclass
class EndpointHandle:
    ep: Any
    log_sink: LogSink
    transport_id: int


def _ep_config(cfg: SeatConfig, log_sink: LogSink, user_agent: str) -> Any:
    ep_cfg = pj.EpConfig()
    ua = ep_cfg.uaConfig
    ua.threadCnt = 0
    ua.mainThreadOnly = True
    ua.maxCalls = MAX_CALLS
    ua.userAgent = user_agent
    ua.mwiUnsolicitedEnabled = False
    # No ua.nameserver on purpose: without pjsip's own DNS resolver a registrar or proxy host is
    # looked up with getaddrinfo (A/AAAA) only, never through DNS SRV or NAPTR records.
    for server in cfg.stun_servers:
        ua.stunServer.append(server)
    ep_cfg.logConfig.level = cfg.pjsip_log_level
    ep_cfg.logConfig.consoleLevel = cfg.pjsip_log_level
    ep_cfg.logConfig.writer = log_sink
    ep_cfg.logConfig.decor = 0
    med = ep_cfg.medConfig
    med.clockRate = SAMPLE_RATE
    med.sndClockRate = SAMPLE_RATE
    med.audioFramePtime = FRAME_MS
    med.channelCount = 1
    med.noVad = True
    # No echo canceller: there is no sound device, and it would alter the recording.
    med.ecTailLen = 0
    return ep_cfg


def _transport(ep: Any, cfg: SeatConfig) -> int:
    tcfg = pj.TransportConfig()
    tcfg.port = cfg.sip_port
    tcfg.boundAddress = cfg.bind_address
    if cfg.public_address:
        tcfg.publicAddress = cfg.public_address
    return ep.transportCreate(_TRANSPORTS[cfg.transport], tcfg)


def _codecs(ep: Any, order: tuple[str, ...]) -> None:
    """Enable only the configured codecs, in order; priority 0 disables a codec."""
    for info in ep.codecEnum2():
        ep.codecSetPriority(info.codecId, 0)
    for rank, name in enumerate(order):
        ep.codecSetPriority(SUPPORTED_CODECS[name], 255 - rank)


def start_endpoint(cfg: SeatConfig, user_agent: str) -> EndpointHandle:
    ep = pj.Endpoint()
    ep.libCreate()
    _log_version(ep)
    log_sink = LogSink()
    ep.libInit(_ep_config(cfg, log_sink, user_agent))
    transport_id = _transport(ep, cfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    _codecs(ep, cfg.codecs)
    return EndpointHandle(ep, log_sink, transport_id)


def _log_version(ep: Any) -> None:
    """Which pjproject this process runs, read from the library itself (the README names it too)."""
    version = ep.libVersion()
    if (version.major, version.minor) < FIXED_RELEASE:
        log.warning("pjproject %s: without the security fixes of pjproject 2.16 and 2.17; "
                    "keep seats behind a PBX/SBC and list the trunks in telephony.allowed_peers", version.full)
    else:
        log.info("pjproject %s", version.full)


def account_config(cfg: SeatConfig, user: str, transport_id: int | None = None) -> Any:
    acfg = pj.AccountConfig()
    if transport_id is not None:
        # Bound to the seat's one transport: otherwise pjsua builds the Contact of an answer for the
        # caller's transport (UDP when its Contact has no ;transport=tcp) and a TCP seat answers 500.
        acfg.sipConfig.transportId = transport_id
    host = cfg.public_address or cfg.bind_address
    acfg.idUri = f"sip:{cfg.account.username or user}@{host}:{cfg.sip_port}"
    acct = cfg.account
    if acct.registrar:
        acfg.regConfig.registrarUri = acct.registrar
        acfg.idUri = f"sip:{acct.username}@{acct.registrar.removeprefix('sip:')}"
    else:
        acfg.regConfig.registerOnAdd = False
    if acct.username:
        cred = pj.AuthCredInfo("digest", acct.realm, acct.username, 0, acct.password)
        acfg.sipConfig.authCreds.append(cred)
    if acct.outbound_proxy:
        acfg.sipConfig.proxies.append(acct.outbound_proxy)
    rtp = acfg.mediaConfig.transportConfig
    rtp.boundAddress = cfg.bind_address
    rtp.port = cfg.rtp_port
    rtp.portRange = cfg.rtp_port_range
    if cfg.public_address:
        rtp.publicAddress = cfg.public_address
    acfg.presConfig.publishEnabled = False
    acfg.mwiConfig.enabled = False
    acfg.videoConfig.autoShowIncoming = False
    acfg.videoConfig.autoTransmitOutgoing = False
    return acfg


def call_param(code: int = 0, reason: str = "") -> Any:
    prm = pj.CallOpParam(True)
    prm.opt.videoCount = 0
    prm.opt.audioCount = 1
    if code:
        prm.statusCode = code
    if reason:
        prm.reason = reason
    return prm


def stop_endpoint(handle: EndpointHandle, registered: bool = False) -> None:
    """Destroy last: every Call/port reference must already be dropped by the caller.

    Without a registration there is no un-REGISTER answer to wait for, so skip
    pjsua's one-second wait for incoming messages (it doubles test and restart time).
    """
    gc.collect()
    handle.ep.libDestroy(0 if registered else pj.PJSUA_DESTROY_NO_RX_MSG)
