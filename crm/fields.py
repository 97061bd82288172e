"""Checks every free-text, JSON, time or id value from a client goes through.

PostgreSQL refuses NUL characters (in text and in jsonb) and lone UTF-16
surrogates cannot be encoded at all: unchecked, either would be a 500
instead of a 422 naming the field.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from crm.errors import MissingFields, UserError

DETAILS_MAX_BYTES = 64 * 1024


class InvalidValue(UserError):
    error_id = "invalid_value"


class UnknownFields(UserError):
    error_id = "unknown_fields"


def check_unknown(body: dict, allowed, *, what: str) -> None:
    """422 naming every key of body that is not in allowed."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise UnknownFields(
            f"unknown {what} fields: {', '.join(unknown)}", fields=unknown, allowed=list(allowed)
        )


def text_problem(value: str, max_len: int) -> str | None:
    """Why text cannot be stored as it is, or None."""
    if len(value) > max_len:
        return f"must be at most {max_len} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def check_text(value, field: str, *, max_len: int, required: bool = False) -> str:
    """Stripped text, '' for null; 422 naming the field when it is not storable text."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidValue(f"{field} must be text", fields=[field])
    value = value.strip()
    if required and not value:
        raise MissingFields(f"{field} is required", fields=[field])
    problem = text_problem(value, max_len)
    if problem:
        raise InvalidValue(f"{field} {problem}", fields=[field])
    return value


def check_details(value, field: str = "details") -> dict:
    """A JSON object small enough and clean enough for a jsonb column."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValue(f"{field} must be a JSON object", fields=[field])
    problem = text_problem(json.dumps(value, ensure_ascii=False), DETAILS_MAX_BYTES)
    if problem is None and any("\x00" in text for text in _strings(value)):
        problem = "must not contain NUL characters"  # jsonb refuses \u0000
    if problem:
        raise InvalidValue(f"{field} {problem}", fields=[field])
    return value


def _strings(value):
    """Every key and string value inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def parse_time(value, field: str) -> dt.datetime | None:
    """An ISO 8601 time with a UTC offset; None for null or ''."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        if not isinstance(value, str):
            raise InvalidValue(
                f"{field} must be a time like 2025-03-31T15:00:00+08:00", fields=[field]
            )
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidValue(
                f"{field} must be a time like 2025-03-31T15:00:00+08:00", fields=[field]
            ) from None
    if parsed.tzinfo is None:
        raise InvalidValue(
            f"{field} needs a UTC offset (e.g. +08:00 or Z): whose 15:00 is it?", fields=[field]
        )
    return parsed


def parse_call_id(value, field: str = "call_id") -> uuid.UUID | None:
    if value is None or value == "":
        return None
    if isinstance(value, uuid.UUID):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError
        return uuid.UUID(value.strip())
    except ValueError:
        raise InvalidValue(f"{field} must be a call id (a UUID)", fields=[field]) from None
