"""Opening the CRM store: which server, which database, migrations, disposition codes."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import asyncpg

from crm import db
from crm.dispositions_catalog import Disposition, load_catalog, sync_catalog
from crm.transcripts import set_embedding_index

log = logging.getLogger("telesales.store")


async def database_url(settings: SimpleNamespace) -> str:
    """The configured server, else the embedded one under data_dir (started if needed)."""
    if settings.database.url:
        return settings.database.url
    admin_url = db.start_embedded(settings.data_dir)
    return await db.ensure_database(admin_url, settings.database.embedded_name)


def disposition_catalog(settings: SimpleNamespace) -> dict[str, Disposition]:
    return load_catalog(settings.config_dir / settings.crm.dispositions_file)


async def prepare(url: str, catalog: dict[str, Disposition]) -> None:
    """Apply migrations and mirror the disposition codes; safe to run from several processes."""
    conn = await db.connect(url)
    try:
        applied = await db.migrate(conn)
        await sync_catalog(conn, catalog)
    finally:
        await conn.close()
    if applied:
        log.info("database migrated", extra={"versions": applied})


async def open_pool(settings: SimpleNamespace, catalog: dict[str, Disposition]) -> asyncpg.Pool:
    url = await database_url(settings)
    await prepare(url, catalog)
    pool = await db.create_pool(url, settings.database.pool_min, settings.database.pool_max)
    await set_embedding_index(pool, settings.search.vector_index)
    return pool
