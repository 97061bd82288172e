"""Seat configuration: plain data that crosses into the seat process as JSON.

Built by the service from `settings.telephony` (see `seat_configs`), so nothing
here is hard-coded: ports, account, codecs and peers all come from settings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

# The only codecs a seat enables; everything else the wheel ships is switched off.
SUPPORTED_CODECS = {"PCMA": "PCMA/8000/1", "PCMU": "PCMU/8000/1", "G722": "G722/16000/1"}
TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True)
class AccountConfig:
    """A SIP account; an empty registrar means no REGISTER (direct IP calls)."""

    registrar: str = ""
    username: str = ""
    password: str = ""
    realm: str = ""
    outbound_proxy: str = ""


@dataclass(frozen=True)
class SeatConfig:
    name: str
    sip_port: int
    recordings_dir: str
    bind_address: str = "127.0.0.1"
    public_address: str = ""
    transport: str = "udp"
    stun_servers: tuple[str, ...] = ()
    account: AccountConfig = field(default_factory=AccountConfig)
    codecs: tuple[str, ...] = ("PCMA", "PCMU", "G722")
    # Addresses (IP or IP:port) whose INVITEs a seat accepts; empty = none.
    allowed_peers: tuple[str, ...] = ()
    # Numbers (user part of the To URI) an inbound call may be for; empty = any number from an allowed peer.
    inbound_numbers: tuple[str, ...] = ()
    # First RTP port of this seat's range (0: let the OS choose) and how many ports it may use.
    rtp_port: int = 0
    rtp_port_range: int = 0
    ring_timeout_seconds: float = 30.0
    # pjsua2 log level routed to our logger (0 = off, 1 = errors ... 5 = trace).
    pjsip_log_level: int = 1

    def __post_init__(self) -> None:
        unknown = [c for c in self.codecs if c not in SUPPORTED_CODECS]
        if unknown:
            raise ValueError(f"telephony.codecs: unsupported {unknown}; use any of {', '.join(SUPPORTED_CODECS)}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"telephony.transport: must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SeatConfig:
        data = json.loads(text)
        data["account"] = AccountConfig(**data.get("account", {}))
        for key in ("stun_servers", "codecs", "allowed_peers", "inbound_numbers"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    def with_port(self, name: str, sip_port: int) -> SeatConfig:
        return dataclasses.replace(self, name=name, sip_port=sip_port)
