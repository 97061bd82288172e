"""PostgreSQL: the embedded server, the connection pool and the migrations."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from importlib import resources
from pathlib import Path

import asyncpg

from crm.json_values import json_default

log = logging.getLogger("crm.db")

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 7_250_411


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under data_dir/pgdata; return its admin URL.

    The server keeps running after this process exits, so a restart of the
    service (or a second `make run`) finds it already up and its data intact.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); harmless here.
        warnings.simplefilter("ignore")
        import pgserver  # heavy import, only needed in embedded mode

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir / "pgdata", cleanup_mode=None)
    return server.get_uri()


def with_database(url: str, name: str) -> str:
    """Return url with its database name replaced (keeps host, socket and options)."""
    head, sep, query = url.partition("?")
    scheme, rest = head.split("://", 1)
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}{sep}{query}"


async def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server at admin_url if it is missing; return its URL."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"database name {name!r} must be lower-case letters, digits, _")
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def _init_connection(conn: asyncpg.Connection) -> None:
    def encode(value) -> str:
        return json.dumps(value, default=json_default, ensure_ascii=False)

    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=encode, decoder=json.loads, schema="pg_catalog")


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn


async def create_pool(url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_connection)


def _migration_files() -> list[tuple[int, str, str]]:
    folder = resources.files("crm") / "migrations"
    found = []
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)


class MigrationError(RuntimeError):
    """The database's migration history does not match the code."""


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the numbered migrations that are missing, each in its own transaction.

    A landed migration is never edited: its checksum is recorded, and a
    mismatch stops start-up instead of leaving two schemas that differ.
    Returns the versions applied now.
    """
    await conn.execute("select pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            """create table if not exists schema_migrations (
                   version integer primary key,
                   name text not null,
                   checksum text not null,
                   applied_at timestamptz not null default now())"""
        )
        applied = {r["version"]: r for r in await conn.fetch("select * from schema_migrations")}
        done = []
        for version, name, sql in _migration_files():
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in applied:
                if applied[version]["checksum"] != checksum:
                    raise MigrationError(
                        f"migration {version:04d}_{name}.sql differs from the one applied to this "
                        "database; landed migrations must not be edited, add a new one instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "insert into schema_migrations (version, name, checksum) values ($1, $2, $3)",
                    version, name, checksum,
                )
            log.info("migration applied", extra={"version": version, "migration": name})
            done.append(version)
        return done
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _MIGRATION_LOCK)
