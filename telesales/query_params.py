"""Query-string parameters: parsed, range-checked, or a 400 naming the parameter."""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from telesales.web import BadRequest

PER_PAGE_DEFAULT = 50
PER_PAGE_MAX = 200
PAGE_MAX = 100_000  # keeps the offset far inside bigint; nobody pages this far by hand


def query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    # 18 digits at most: always within PostgreSQL's bigint, never a 500 from the database
    if not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise BadRequest(f"{name} must be a whole number, got {value[:40]!r}", fields=[name])
    return int(value)


def query_bool(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {value!r}", fields=[name])


def query_time(request: web.Request, name: str) -> dt.datetime | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    # An unencoded "+08:00" in a query string arrives as " 08:00" ('+' means space there).
    value = re.sub(r" (\d\d:?\d\d)$", r"+\1", value)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        example = "2025-03-31T15:00:00+08:00"
        raise BadRequest(f"{name} must be a time like {example}, got {value!r}", fields=[name]) from None
    if when.tzinfo is None:
        raise BadRequest(f"{name} needs a UTC offset (e.g. +08:00 or Z)", fields=[name])
    return when


def _bounded(request: web.Request, name: str, default: int, top: int) -> int:
    value = query_int(request, name)
    if value is None:
        return default
    if not 1 <= value <= top:
        raise BadRequest(f"{name} must be a whole number from 1 to {top}, got {value}", fields=[name])
    return value


def page_params(request: web.Request) -> tuple[int, int]:
    """?page= (from 1) and ?per_page= (default 50, at most 200)."""
    return _bounded(request, "page", 1, PAGE_MAX), _bounded(request, "per_page", PER_PAGE_DEFAULT, PER_PAGE_MAX)


def check_query(request: web.Request, allowed) -> None:
    """400 naming query parameters the route does not know (a typo in a filter would
    otherwise be ignored and answer with everything)."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown query parameters: {', '.join(unknown)}", fields=unknown, allowed=sorted(allowed))
