"""Shared fixtures: a real PostgreSQL (the embedded server) and a fresh database per test.

The schema is migrated once into a template database; each test gets its own
copy (CREATE DATABASE ... TEMPLATE), so tests never see each other's rows and
API tests can use real transactions and pools.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from crm import db
from crm.dispositions_catalog import load_catalog, sync_catalog
from telesales.settings import CONFIG_DIR

TEMPLATE = "telesales_test_template"
_counter = itertools.count()


async def _no_durability(url: str) -> None:
    """A throw-away test server needs no crash safety: without fsync a DROP DATABASE and every commit
    skip their disk flushes (measured loaded: a drop 0.64 s -> 0.10 s). Only for the embedded server."""
    admin = await db.connect(url)
    for setting in ("fsync", "synchronous_commit", "full_page_writes"):
        await admin.execute(f"alter system set {setting} = off")
    await admin.execute("select pg_reload_conf()")
    await admin.close()


@pytest.fixture(scope="session")
async def pg_admin_url():
    """Admin URL of the test server: TELESALES_TEST_DATABASE_URL, else an embedded one."""
    url = os.environ.get("TELESALES_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    # Short path: the server's Unix socket lives in this folder (108-byte limit).
    folder = Path(tempfile.mkdtemp(prefix="tspg"))
    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    await _no_durability(server.get_uri())
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def catalog():
    return load_catalog(CONFIG_DIR / "dispositions.toml")


@pytest.fixture(scope="session")
async def template_url(pg_admin_url, catalog):
    admin = await db.connect(pg_admin_url)
    await admin.execute(f'drop database if exists "{TEMPLATE}" with (force)')
    await admin.execute(f'create database "{TEMPLATE}"')
    url = db.with_database(pg_admin_url, TEMPLATE)
    conn = await db.connect(url)
    await db.migrate(conn)
    await sync_catalog(conn, catalog)
    await conn.close()
    yield url
    await admin.execute(f'drop database if exists "{TEMPLATE}" with (force)')
    await admin.close()


@pytest.fixture
async def db_url(pg_admin_url, template_url):
    """URL of a fresh, migrated database for this test only."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = await db.connect(pg_admin_url)
    await admin.execute(f'create database "{name}" template "{TEMPLATE}"')
    try:
        yield db.with_database(pg_admin_url, name)
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


@pytest.fixture
async def conn(db_url):
    c = await db.connect(db_url)
    yield c
    await c.close()


# --- HTTP -----------------------------------------------------------------

@pytest.fixture
def settings(tmp_path):
    """Default settings with the data folder in this test's temp dir."""
    from telesales.settings import load_settings

    return load_settings(environ={"TELESALES_DATA_DIR": str(tmp_path / "var")})


@pytest.fixture
async def app_ctx(db_url, settings, catalog):
    from telesales.app import AppContext

    pool = await db.create_pool(db_url, 1, 4)
    yield AppContext(settings=settings, pool=pool, catalog=catalog)
    await pool.close()


@pytest.fixture
async def client(app_ctx):
    """An HTTP client for the real app on a real port (aiohttp's TestServer on 127.0.0.1)."""
    from aiohttp.test_utils import TestClient, TestServer

    from telesales.app import create_app

    async with TestClient(TestServer(create_app(app_ctx), host="127.0.0.1")) as c:
        yield c


@pytest.fixture
def login(app_ctx):
    """login(client, role) -> user dict with csrf_token; creates the user first."""
    from auth_helpers import password_hash

    from crm.users import create_user

    counter = itertools.count()

    async def do_login(http, role: str, username: str | None = None) -> dict:
        username = username or f"{role}{next(counter)}"
        async with app_ctx.pool.acquire() as c:
            await create_user(c, username, role, password_hash())
        resp = await http.post("/api/v1/session", json={"username": username, "password": "correct horse"})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    return do_login


# --- QA ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def whisper_data_dir(tmp_path_factory):
    """The data folder whisper_base joins the model into (models/whisper-base, with its manifest)."""
    return tmp_path_factory.mktemp("whisper")


@pytest.fixture(scope="session")
def whisper_base(whisper_data_dir):
    """The bundled Whisper base, joined from its packages and loaded once for the session (each join and
    load takes seconds; the language and scoring settings the modules vary are not part of the load)."""
    from qa.pipeline import load_model
    from telesales.settings import load_settings

    return load_model(load_settings(environ={"TELESALES_DATA_DIR": str(whisper_data_dir)}))


# --- Browser -------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
# Chromium's own background traffic is refused on machines with no network; keep it quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
async def browser():
    """Debian's headless Chromium driven by Playwright, one per test session."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def page(browser, client):
    """A fresh browser page (own cookies) with page.base_url pointing at the test server."""
    context = await browser.new_context(viewport={"width": 1366, "height": 768})
    pg = await context.new_page()
    pg.base_url = str(client.make_url("")).rstrip("/")
    yield pg
    await context.close()


# --- SIP -------------------------------------------------------------------

@pytest.fixture
def peers():
    """start(*sim_args) -> a telephony.sim peer on a free port (peer.uri); all killed at teardown."""
    from sip_helpers import free_udp_port, sim_ready, start_sim

    started = []

    async def start(*args: str):
        port = free_udp_port()
        peer = start_sim(port, *args)
        started.append(peer)
        peer.uri = f"sip:customer@127.0.0.1:{port}"
        await sim_ready(peer)
        return peer

    yield start
    for peer in started:
        peer.kill()


@pytest.fixture
async def seat(tmp_path):
    """(manager, event log) of one running seat named seat1, recording under tmp_path."""
    from sip_helpers import EventLog, free_udp_port

    from telephony.config import SeatConfig
    from telephony.manager import SeatManager

    cfg = SeatConfig(name="seat1", sip_port=free_udp_port(), recordings_dir=str(tmp_path / "recordings"))
    manager = SeatManager([cfg])
    await manager.start()
    log = EventLog(manager.events())
    yield manager, log
    await log.aclose()
    await manager.stop()
