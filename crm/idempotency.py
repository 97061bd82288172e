"""Apply a state-changing request once per (user, Idempotency-Key).

A client that retries (a timeout, a double click, a flaky network) sends the
same key again and gets the first answer back instead of a second order. All in
ONE transaction:

1. pg_try_advisory_xact_lock on (user, key): not acquired means the first
   request with this key is still running -> 409 idempotency_in_flight;
2. a stored answer for (user, key): same request -> replay it, nothing runs;
   different request -> 422 idempotency_key_reused;
3. otherwise run the work on the same connection, store its answer, commit.

The lock is taken before the lookup and held until commit, and PostgreSQL makes
a commit visible before it releases the transaction's locks, so a second
request either sees the stored answer or is refused; the work never runs twice.
A UserError from the work rolls everything back and stores nothing: the client
may fix the request and retry with the same key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from crm.errors import Conflict, UserError
from crm.json_values import json_default

# First half of the two-int advisory lock key; the second half is hashtext(user:key).
# Any constant works as long as nothing else in the database uses it.
LOCK_CLASS = 7_250_412

Work = Callable[[asyncpg.Connection], Awaitable[tuple[int, Any]]]


class InFlight(Conflict):
    error_id = "idempotency_in_flight"


class KeyReused(UserError):
    error_id = "idempotency_key_reused"


class BadKey(UserError):
    status = 400
    error_id = "bad_idempotency_key"


def check_key(key: str) -> str:
    """Keys are client-chosen (a UUID is typical): 1-200 visible ASCII characters."""
    if not isinstance(key, str) or not re.fullmatch(r"[\x21-\x7e]{1,200}", key):
        raise BadKey(
            "Idempotency-Key must be 1-200 visible ASCII characters (a UUID is typical)",
            fields=["Idempotency-Key"],
        )
    return key


def fingerprint(body: bytes | dict | list, scope: str = "") -> str:
    """sha256 of what was asked: the scope (e.g. "POST /api/v1/dispositions") and the body.
    A parsed body is hashed in canonical form, so key order and spacing do not matter."""
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    else:
        data = json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default
        ).encode()
    h = hashlib.sha256(scope.encode())
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


async def run_once(
    db: asyncpg.Pool | asyncpg.Connection,
    user_id: int,
    key: str,
    body: bytes | dict | list,
    work: Work,
    *,
    scope: str = "",
) -> tuple[int, Any, bool]:
    """Run work(conn) once for (user_id, key); returns (status, body, replayed).

    The body returned is the stored JSON read back, so the first answer and every
    replay are the same data (datetimes and decimals as strings).
    """
    key = check_key(key)
    digest = fingerprint(body, scope)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _run(conn, user_id, key, digest, work)
    return await _run(db, user_id, key, digest, work)


async def _run(conn: asyncpg.Connection, user_id: int, key: str, digest: str, work: Work):
    async with conn.transaction():
        locked = await conn.fetchval(
            "select pg_try_advisory_xact_lock($1, hashtext($2))", LOCK_CLASS, f"{user_id}:{key}"
        )
        if not locked:
            raise InFlight(
                "a request with this Idempotency-Key is still being processed; "
                "retry in a moment to get its result"
            )
        stored = await conn.fetchrow(
            """select request_sha256, response_status, response_body::text as body
               from idempotency_keys where user_id = $1 and key = $2""",
            user_id,
            key,
        )
        if stored is not None:
            if stored["request_sha256"] != digest:
                raise KeyReused(
                    "this Idempotency-Key was already used for a different request; "
                    "use a new key for a new request",
                    fields=["Idempotency-Key"],
                )
            return stored["response_status"], json.loads(stored["body"]), True
        status, result = await work(conn)
        text = json.dumps(result, default=json_default, ensure_ascii=False)
        await conn.execute(
            """insert into idempotency_keys (user_id, key, request_sha256, response_status,
                   response_body)
               values ($1, $2, $3, $4, $5::text::jsonb)""",
            user_id,
            key,
            digest,
            status,
            text,
        )
    return status, json.loads(text), False


async def purge(conn: asyncpg.Connection, *, older_than: dt.datetime) -> int:
    """Forget keys stored before `older_than` (clients retry within minutes, not weeks)."""
    result = await conn.execute("delete from idempotency_keys where created_at < $1", older_than)
    return int(result.split()[-1])
