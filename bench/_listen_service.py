"""Helper of bench/listen_latency.py: the real service (app, SeatService, one seat) with one live call.

Runs in its own process so the benchmark's WebSocket clients and packet sniffer do not share its event
loop. It starts an embedded PostgreSQL, a seat (PCMU only, RTP on --rtp-port), a telephony.sim customer
that loops --play, places the call, and prints one JSON line: the HTTP port, the call id and a
supervisor's login. It runs until its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from crm import db  # noqa: E402
from crm.dispositions_catalog import load_catalog, sync_catalog  # noqa: E402
from crm.users import create_user  # noqa: E402
from telephony.config import SeatConfig  # noqa: E402
from telephony.manager import SeatManager  # noqa: E402
from telesales.app import AppContext, create_app  # noqa: E402
from telesales.passwords import hash_password  # noqa: E402
from telesales.seats import SeatService  # noqa: E402
from telesales.settings import CONFIG_DIR, load_settings  # noqa: E402

PASSWORD = "bench password"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _database(folder: Path) -> str:
    import pgserver

    server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    url = server.get_uri()
    conn = await db.connect(url)
    await db.migrate(conn)
    await sync_catalog(conn, load_catalog(CONFIG_DIR / "dispositions.toml"))
    await conn.close()
    return url


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="tslisten"))
    url = await _database(folder)
    settings = load_settings(environ={"TELESALES_DATA_DIR": str(folder / "var"),
                                      "TELESALES_LOG_LEVEL": "WARNING"})
    pool = await db.create_pool(url, 2, 8)
    async with pool.acquire() as conn:
        await create_user(conn, "bench_boss", "supervisor", hash_password(PASSWORD))
    cfg = SeatConfig(name="seat1", sip_port=free_udp_port(), recordings_dir=str(folder / "var" / "recordings"),
                     codecs=("PCMU",), rtp_port=args.rtp_port, rtp_port_range=8)
    seats = SeatService(SeatManager([cfg]), pool, folder / "var")
    await seats.start()
    runner = web.AppRunner(create_app(AppContext(settings=settings, pool=pool, catalog={}, seats=seats)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]

    sim_port = free_udp_port()
    sim = subprocess.Popen([sys.executable, "-m", "telephony.sim", "--port", str(sim_port), "--answer-after", "0",
                            "--play", args.play, "--loop", "--codecs", "PCMU"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(1.0)  # the sim's endpoint starts
        call_id = await seats.dial("seat1", f"sip:customer@127.0.0.1:{sim_port}")
        for _ in range(100):
            async with pool.acquire() as conn:
                if await conn.fetchval("select answered_at is not null from calls where id = $1", call_id):
                    break
            await asyncio.sleep(0.1)
        print(json.dumps({"port": http_port, "call_id": str(call_id), "username": "bench_boss",
                          "password": PASSWORD}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        sim.kill()
        sim.wait()
        await runner.cleanup()
        await seats.stop()
        await pool.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--play", required=True)
    p.add_argument("--rtp-port", type=int, required=True)
    asyncio.run(main(p.parse_args()))
