import pytest

from crm import db


async def test_migrations_are_recorded_and_not_reapplied(conn):
    versions = [r["version"] for r in await conn.fetch("select version from schema_migrations")]
    assert versions and versions == sorted(versions)
    assert await db.migrate(conn) == []


async def test_edited_migration_stops_start_up(conn):
    await conn.execute("update schema_migrations set checksum = 'x' where version = 1")
    with pytest.raises(db.MigrationError, match="must not be edited"):
        await db.migrate(conn)


async def test_core_tables_exist(conn):
    tables = {r["tablename"] for r in await conn.fetch("select tablename from pg_tables where schemaname = 'public'")}
    for t in ("users", "teams", "customers", "customer_phones", "campaigns", "leads", "calls",
              "dispositions", "call_dispositions", "follow_ups", "interactions", "orders",
              "complaints", "complaint_events", "survey_answers", "do_not_call", "audit_log"):
        assert t in tables


async def test_dispositions_synced_from_config(conn):
    row = await conn.fetchrow("select * from dispositions where code = 'SALE'")
    assert row["sale"] and row["final"] and row["human_answered"]
