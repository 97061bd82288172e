"""Idempotency keys: a retried request is applied once, a reused key is refused, and a
request arriving while the first with its key still runs gets a 409."""

from __future__ import annotations

import asyncio
import datetime as dt

import factories as make
import pytest

from crm import db, idempotency
from crm.dispositions import record_disposition
from crm.errors import UserError


@pytest.fixture
async def setup(conn):
    agent = await make.user(conn, "agent")
    lead = await make.lead(conn)
    call = await make.call(conn, lead, agent)
    return agent, lead, call


def dispose(catalog, request, agent):
    async def work(c):
        return 201, await record_disposition(c, catalog, request, agent_id=agent, **make.RULES)

    return work


async def test_retry_with_the_same_key_returns_the_first_result_and_writes_once(
    conn, catalog, setup
):
    agent, lead, call = setup
    request = {"code": "NA", "call_id": call, "note": "no one home"}
    status, first, replayed = await idempotency.run_once(
        conn, agent, "k-1", request, dispose(catalog, request, agent)
    )
    assert (status, replayed) == (201, False)
    # the same request, keys in another order: still the same request
    again = dict(reversed(list(request.items())))
    status, second, replayed = await idempotency.run_once(
        conn, agent, "k-1", again, dispose(catalog, again, agent)
    )
    assert (status, replayed) == (201, True)
    assert second == first
    assert await make.count(conn, "call_dispositions") == 1
    assert await conn.fetchval("select attempts_total from leads where id = $1", lead) == 1
    assert await make.count(conn, "audit_log") == 1


async def test_same_key_with_a_different_body_is_422(conn, catalog, setup):
    agent, _, call = setup
    request = {"code": "NA", "call_id": call}
    await idempotency.run_once(conn, agent, "k-2", request, dispose(catalog, request, agent))
    other = {"code": "B", "call_id": call}
    with pytest.raises(UserError) as info:
        await idempotency.run_once(conn, agent, "k-2", other, dispose(catalog, other, agent))
    assert info.value.status == 422 and info.value.error_id == "idempotency_key_reused"
    assert await conn.fetchval("select code from call_dispositions") == "NA"


async def test_same_key_on_another_endpoint_is_422(conn):
    async def work(c):
        return 200, {"ok": True}

    user = await make.user(conn)
    await idempotency.run_once(conn, user, "k", {}, work, scope="POST /a")
    with pytest.raises(UserError, match="different request"):
        await idempotency.run_once(conn, user, "k", {}, work, scope="POST /b")


async def test_a_request_while_the_first_with_its_key_is_in_flight_is_409(
    db_url, conn, catalog, setup
):
    agent, _, call = setup
    request = {"code": "NA", "call_id": call}
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_work(c):
        result = await record_disposition(c, catalog, request, agent_id=agent, **make.RULES)
        started.set()
        await release.wait()  # the first request is still running, its transaction open
        return 201, result

    first_conn = await db.connect(db_url)
    try:
        first = asyncio.create_task(
            idempotency.run_once(first_conn, agent, "k-3", request, slow_work)
        )
        try:
            await asyncio.wait_for(started.wait(), 10)
            with pytest.raises(UserError) as info:
                await idempotency.run_once(
                    conn, agent, "k-3", request, dispose(catalog, request, agent)
                )
            assert info.value.status == 409 and info.value.error_id == "idempotency_in_flight"
            # nothing of the first is visible yet
            assert await make.count(conn, "call_dispositions") == 0
        finally:
            release.set()
            status, body, replayed = await asyncio.wait_for(first, 10)
    finally:
        await first_conn.close()
    assert (status, replayed) == (201, False)
    # once the first has finished, the retry gets its answer
    status, again, replayed = await idempotency.run_once(
        conn, agent, "k-3", request, dispose(catalog, request, agent)
    )
    assert (status, again, replayed) == (201, body, True)
    assert await make.count(conn, "call_dispositions") == 1


async def test_a_refused_request_stores_nothing_so_the_fixed_request_can_reuse_the_key(
    conn, catalog, setup
):
    agent, _, call = setup
    bad = {"code": "SALE", "call_id": call}
    with pytest.raises(UserError, match="order.product"):
        await idempotency.run_once(conn, agent, "k-4", bad, dispose(catalog, bad, agent))
    assert await make.count(conn, "idempotency_keys") == 0
    good = {"code": "NA", "call_id": call}
    status, _, replayed = await idempotency.run_once(
        conn, agent, "k-4", good, dispose(catalog, good, agent)
    )
    assert (status, replayed) == (201, False)


async def test_keys_belong_to_one_user(conn):
    alice, bob = await make.user(conn), await make.user(conn)
    runs = []

    async def work(c):
        runs.append(1)
        return 200, {"n": len(runs)}

    await idempotency.run_once(conn, alice, "same", {"x": 1}, work)
    _, body, replayed = await idempotency.run_once(conn, bob, "same", {"x": 1}, work)
    assert body == {"n": 2} and not replayed


async def test_a_key_that_is_not_visible_ascii_is_400(conn):
    user = await make.user(conn)

    async def work(c):
        return 200, {}

    for key in ("", "with space", "x" * 201, "ключ"):
        with pytest.raises(UserError) as info:
            await idempotency.run_once(conn, user, key, {}, work)
        assert info.value.status == 400


async def test_old_keys_can_be_purged(conn):
    user = await make.user(conn)

    async def work(c):
        return 200, {}

    await idempotency.run_once(conn, user, "old", {}, work)
    assert (
        await idempotency.purge(conn, older_than=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
        == 1
    )
