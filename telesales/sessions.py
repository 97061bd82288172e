"""Login sessions kept in PostgreSQL, so logging out or an admin's deactivation really ends them.

The cookie holds only a random token; the table holds its sha256, so a copy
of the database does not hand out live sessions. Expiry slides: every
request moves it session_max_age seconds ahead.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

import asyncpg
from aiohttp import web
from aiohttp_session import AbstractStorage, Session


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PgSessionStorage(AbstractStorage):
    def __init__(self, pool: asyncpg.Pool, *, max_age: int, secure: bool) -> None:
        super().__init__(cookie_name="telesales_session", max_age=max_age, httponly=True,
                         secure=secure, samesite="Lax")
        self._pool = pool

    async def load_session(self, request: web.Request) -> Session:
        token = self.load_cookie(request)
        if token:
            data = await self._pool.fetchval(
                """update web_sessions set expires_at = now() + make_interval(secs => $2)
                   where id = $1 and expires_at > now() returning data""",
                _digest(str(token)), self.max_age,
            )
            if data is not None:
                return Session(str(token), data={"session": data, "created": int(time.time())}, new=False,
                               max_age=self.max_age)
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(self, request: web.Request, response: web.StreamResponse,
                           session: Session) -> None:
        if session.identity is not None and (session.empty or session.new):
            # invalidate(), or new_session() at login replacing an old one
            await self._pool.execute("delete from web_sessions where id = $1", _digest(session.identity))
        if session.empty:
            self.save_cookie(response, "", max_age=session.max_age)
            return
        token = session.identity if not session.new and session.identity else secrets.token_urlsafe(32)
        await self._pool.execute(
            """insert into web_sessions (id, user_id, data, expires_at)
               values ($1, $2, $3, now() + make_interval(secs => $4))
               on conflict (id) do update set data = excluded.data, expires_at = excluded.expires_at""",
            _digest(token), dict(session).get("uid"), json.loads(json.dumps(dict(session))), self.max_age,
        )
        self.save_cookie(response, token, max_age=session.max_age)
