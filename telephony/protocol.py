"""The seat socket protocol: one JSON object per line, both ways.

service -> seat  {"id": 7, "cmd": "dial", "args": {...}}
seat -> service  {"reply": 7, "ok": true, "result": {...}}   or  {"reply": 7, "ok": false, "error": "..."}
seat -> service  {"event": {"type": "CallAnswered", ...}}
"""

from __future__ import annotations

import json
from typing import Any

from telephony.events import Event, to_dict

COMMANDS = (
    "dial", "answer", "hangup", "hold", "unhold", "mute", "unmute", "send_dtmf", "transfer",
    "consult", "complete_transfer", "cancel_consult", "open_tap", "close_tap", "headset_connect",
    "headset_disconnect", "queue_play", "queue_connect", "ping", "shutdown", "abandon",
)
# A line longer than this is a bug or an attack, not a command.
MAX_LINE = 64 * 1024


class CommandError(Exception):
    """A command the seat refused or could not carry out; the message is for the user."""


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def command(request_id: int, cmd: str, args: dict[str, Any]) -> bytes:
    return encode({"id": request_id, "cmd": cmd, "args": args})


def reply_ok(request_id: int, result: dict[str, Any]) -> bytes:
    return encode({"reply": request_id, "ok": True, "result": result})


def reply_error(request_id: int, error: str) -> bytes:
    return encode({"reply": request_id, "ok": False, "error": error})


def event(ev: Event) -> bytes:
    return encode({"event": to_dict(ev)})


def decode(line: bytes) -> dict[str, Any]:
    return json.loads(line)
