"""`telesales serve`: open the store, make sure an admin exists, run the web app."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from types import SimpleNamespace

from aiohttp import web

from crm import users as user_store
from crm.monitoring import close_abandoned as close_abandoned_monitoring
from telephony.manager import SeatManager, SeatStartError
from telesales import passwords, store
from telesales.app import AppContext, create_app
from telesales.demo_trunk import demo_trunk_config, route_desk_to_demo, start_demo_trunk
from telesales.inbound import InboundQueue, inbound_config
from telesales.predictive import PredictiveDialer
from telesales.progressive import ProgressiveDialer
from telesales.qa_workers import qa_workers
from telesales.seats import SeatService, seat_configs

log = logging.getLogger("telesales.server")


async def ensure_first_admin(pool) -> str | None:
    """Create user 'admin' with a generated password when no admin exists; return that password."""
    async with pool.acquire() as conn:
        if await user_store.count_admins(conn):
            return None
        password = passwords.generate_password()
        await user_store.create_user(conn, "admin", "admin", passwords.hash_password(password),
                                     display_name="Administrator")
        return password


def public_url(settings: SimpleNamespace) -> str:
    http = settings.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    return http.public_url or f"http://{host}:{http.port}"


async def build_app(settings: SimpleNamespace) -> tuple[web.Application, str | None]:
    """The app on an open pool, and the first admin's password when one was just created."""
    catalog = store.disposition_catalog(settings)
    demo_cfg = demo_trunk_config(settings)  # checked before anything is started
    queue_cfg = inbound_config(settings)
    route_desk_to_demo(settings, demo_cfg)
    pool = await store.open_pool(settings, catalog)
    workers = qa_workers(settings, await store.database_url(settings))  # QA worker processes, not in this one
    # Seats start with the service (none when telephony.seats = 0); the start also
    # repairs recordings that a crash of the previous run left open.
    seats = SeatService(SeatManager(seat_configs(settings)), pool, settings.data_dir,
                        qa_scorecard=settings.qa.scorecard)
    await seats.start()
    async with pool.acquire() as conn:  # monitoring sessions a stopped service left open end now
        await close_abandoned_monitoring(conn)
    await workers.start()
    # Without a SIP provider, a stand-in carrier to call (in the background: /health does not wait).
    demo_trunk = start_demo_trunk(demo_cfg)
    inbound = InboundQueue(queue_cfg, pool, seats)
    await inbound.start()
    ctx = AppContext(settings=settings, pool=pool, catalog=catalog, seats=seats, inbound=inbound)
    app = create_app(ctx)
    progressive = ProgressiveDialer(ctx, settings.dialer.progressive_interval_seconds)
    await progressive.start()
    predictive = PredictiveDialer(ctx)
    await predictive.start()

    async def shut_down(_app):
        await progressive.stop()
        await predictive.stop()
        await inbound.stop()
        if demo_trunk is not None:
            await demo_trunk.stop()
        await workers.stop()
        await seats.stop()
        await pool.close()

    app.on_cleanup.append(shut_down)
    return app, await ensure_first_admin(pool)


async def _serve(settings: SimpleNamespace) -> None:
    app, password = await build_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.http.host, settings.http.port).start()
        # Printed only once the port is open, so whoever reads it can connect at once.
        print(f"telesales is running at {public_url(settings)}", flush=True)
        if password:
            print(f"first start: log in as 'admin' with password {password}  (shown once; "
                  "add more users with: telesales users add NAME --role ROLE)", flush=True)
        else:
            print("log in with your account; add users with: telesales users add NAME --role ROLE",
                  flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def serve(settings: SimpleNamespace) -> int:
    try:
        asyncio.run(_serve(settings))
    except OSError as e:
        # Port taken, or the configured database unreachable: say which, no stack trace.
        print(f"telesales: cannot start: {e}", file=sys.stderr)
        return 1
    except SeatStartError as e:
        # Most often the SIP port is taken, e.g. by a second `make run`.
        print(f"telesales: cannot start: {e}; is UDP port {settings.telephony.sip_base_port} "
              "(telephony.sip_base_port) free? telephony.seats = 0 runs without seats", file=sys.stderr)
        return 1
    return 0
