"""Users, their roles and teams."""

from __future__ import annotations

import re

import asyncpg

from crm.errors import Conflict, NotFound, UserError

ROLES = ("agent", "qa", "supervisor", "admin")


def check_username(username: str) -> str:
    username = username.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,64}", username):
        raise UserError(
            f"username {username!r} must be 2-64 letters, digits or _ . @ -", fields=["username"]
        )
    return username


async def create_user(
    conn: asyncpg.Connection,
    username: str,
    role: str,
    password_hash: str,
    *,
    display_name: str = "",
    team: str | None = None,
    sip_uri: str | None = None,
    skills: list[str] | None = None,
) -> asyncpg.Record:
    username = check_username(username)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; use one of {', '.join(ROLES)}", fields=["role"])
    async with conn.transaction():
        team_id = None
        if team:
            team_id = await conn.fetchval(
                "insert into teams (name) values ($1) on conflict (name) do update set name = excluded.name "
                "returning id",
                team,
            )
        try:
            return await conn.fetchrow(
                """insert into users (username, display_name, role, password_hash, team_id, sip_uri, skills)
                   values ($1, $2, $3, $4, $5, $6, $7)
                   returning id, username, display_name, role, team_id, sip_uri, skills, active""",
                username, display_name or username, role, password_hash, team_id, sip_uri, skills or [],
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"user {username!r} already exists", fields=["username"]) from None


async def find_by_username(conn: asyncpg.Connection, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from users where lower(username) = lower($1)", username)


async def get_user(conn: asyncpg.Connection, user_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        """select u.id, u.username, u.display_name, u.role, u.team_id, t.name as team,
                  u.sip_uri, u.skills, u.active, u.created_at, u.last_login_at
           from users u left join teams t on t.id = u.team_id where u.id = $1""",
        user_id,
    )
    if row is None:
        raise NotFound(f"no user {user_id}")
    return row


async def list_users(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        """select u.id, u.username, u.display_name, u.role, t.name as team, u.sip_uri, u.skills, u.active
           from users u left join teams t on t.id = u.team_id order by u.username"""
    )


async def count_admins(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("select count(*) from users where role = 'admin' and active")
