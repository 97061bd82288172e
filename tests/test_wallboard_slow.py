"""A browser that stops reading must not delay the others nor make the service hold its backlog.

The hub's own rule (bounded queue, coalesced to one resync) is tested directly; then, against the
real app, a raw TCP WebSocket client that completes the handshake and never reads again sits beside
a normal client while thousands of large events are published.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import time
import tracemalloc

from wallboard_helpers import base_url, logged_in, make_user, next_event, open_board

from telesales.floor_feed import FLOOR
from telesales.floor_hub import RESYNC, FloorHub
from telesales.routes.wallboard import WS_PATH


async def test_a_full_queue_is_replaced_by_one_resync_marker_and_others_get_everything():
    hub = FloorHub(queue_size=4)
    slow, fast = hub.subscribe(), hub.subscribe()
    for n in range(10):
        hub.publish({"type": "queue", "queue": "q", "waiting": n, "longest_wait_since": None})
        fast.queue.get_nowait()  # the fast one keeps up
    assert slow.queue.qsize() <= 4 and slow.resyncs >= 1
    queued = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert queued[0] == RESYNC and all(json.loads(t)["waiting"] > 6 for t in queued[1:])
    assert fast.dropped == 0 and fast.delivered == 10
    assert hub.queues["q"]["waiting"] == 9  # the latest state is kept for snapshots


async def test_team_events_go_only_to_subscribers_of_that_team():
    hub = FloorHub()
    north, everyone = hub.subscribe([1]), hub.subscribe(None)
    hub.publish({"type": "agent", "team_id": 2, "agent": {}})
    hub.publish({"type": "agent", "team_id": None, "agent": {}})
    hub.publish({"type": "campaign", "campaign": {}})  # no team: everyone
    assert (north.queue.qsize(), everyone.queue.qsize()) == (1, 3)


def _stalled_client(url: str, cookie: str) -> socket.socket:
    """Handshake over a raw socket with a tiny receive buffer, then never read again."""
    host, port = url.split("//")[1].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Origin: {url}\r\nCookie: {cookie}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_browser_that_never_reads_neither_delays_the_others_nor_grows_memory(client, app_ctx):
    await make_user(app_ctx, "boss", "supervisor")
    session, _ = await logged_in(client, "boss")
    cookie = "; ".join(f"{m.key}={m.value}" for m in session.cookie_jar)
    stalled = await asyncio.to_thread(_stalled_client, base_url(client), cookie)
    hub = client.app[FLOOR].hub
    while hub.subscribers < 1:  # the handler subscribes before it answers 101; this only double-checks
        await asyncio.sleep(0.01)
    stalled_sub = hub.subscriptions()[0]
    async with session, await open_board(session, client) as ws:
        await next_event(ws, lambda e: e["type"] == "snapshot")
        fast_sub = next(s for s in hub.subscriptions() if s is not stalled_sub)
        received = asyncio.create_task(_count_until(ws, "last"))
        padding = "x" * 8000
        tracemalloc.start()
        publish_seconds = []
        try:
            before = tracemalloc.take_snapshot()
            for n in range(4000):  # 32 MB in all: far more than any socket buffer holds
                t = time.perf_counter()
                hub.publish({"type": "queue", "queue": f"q{n % 5}", "waiting": n, "longest_wait_since": None,
                             "pad": padding})
                publish_seconds.append(time.perf_counter() - t)
                # Paced by the reading client only (as calls are, by time): whatever the stalled
                # one does, publishing goes on.
                while fast_sub.queue.qsize() > 16:
                    await asyncio.sleep(0.001)
            sent_at = time.monotonic()
            hub.publish({"type": "queue", "queue": "last", "waiting": 0, "longest_wait_since": None})
            count = await asyncio.wait_for(received, 20)
            fast_lag = time.monotonic() - sent_at
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
        slow = stalled_sub
        print(f"\nfast client: {count} events, last one {fast_lag * 1000:.0f} ms after publish; "
              f"publish median {statistics.median(publish_seconds) * 1e6:.0f} us, "
              f"max {max(publish_seconds) * 1e6:.0f} us; slow client: dropped {slow.dropped}, "
              f"resyncs {slow.resyncs}, queued {slow.queue.qsize()}; python memory growth "
              f"{growth / 1e6:.2f} MB; loadavg {open('/proc/loadavg').read().strip()}")
        assert fast_sub.dropped == 0 and count == 4001  # the reader got every event
        assert fast_lag < 1.0
        assert slow.dropped > 3000 and slow.queue.qsize() <= hub.queue_size
        # publish() is a plain function (it cannot wait for a socket); the median shows its cost.
        assert statistics.median(publish_seconds) < 0.005
        assert growth < 8e6  # the stalled client's backlog is not kept
    stalled.close()


async def _count_until(ws, queue_name: str) -> int:
    n = 0
    while True:
        msg = await ws.receive()
        event = json.loads(msg.data)
        n += 1
        if event.get("queue") == queue_name:
            return n
