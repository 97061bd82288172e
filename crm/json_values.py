"""Turning database values into JSON: exact money, ISO times, UUIDs as text."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any


def json_default(value: Any) -> Any:
    """`default=` for json.dumps."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # money stays exact on the wire
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "items"):  # asyncpg.Record
        return dict(value.items())
    raise TypeError(f"cannot serialise {type(value).__name__}")
