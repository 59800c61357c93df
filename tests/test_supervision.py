"""Background work is supervised: one poisoned conversation never delays another's close, a
failing sweeper is retried and shows in readiness, a stuck worker fails its liveness.
Real Kafka, real Redis; the faults are caused, not simulated."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.engine_harness import HOUR, PN, Scenario
from wawindow import keys
from wawindow.devservices.redis_server import RedisServer
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.views import window_view
from wawindow.engine.worker import Worker
from wawindow.kafka.publisher import PUBLISHER
from wawindow.redis.connection import connect
from wawindow.service.health import REDIS, WORKER, add_health_routes

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
USERS = 200


async def test_a_poisoned_conversation_does_not_delay_any_other_close(s: Scenario) -> None:
    ends = s.now + 600  # every window ends in 10 minutes
    for u in range(USERS + 1):
        await s.inbound(f"wamid.{u}", ends - 24 * HOUR + u % 5, user=f"1650000{u:04d}")
    await s.process()
    poisoned = keys.ConversationKeys.of(f"{PN}:16500000200")
    await s.redis.set(poisoned.state, b"7 {this is not a state")

    await s.sweep(ends + 10)

    closed = [e for e in await s.events() if e["type"] == "wawindow.service_window.closed"]
    assert "16500000200" not in {e["subject"] for e in closed}
    assert len(closed) == USERS
    [kept] = [r for r in await s.dead_letters() if dict(r.headers)["source"] == b"worker"]
    assert kept.value == b"7 {this is not a state"
    assert b"cannot sweep" in dict(kept.headers)["reason"]
    # set aside: not tried again at every sweep, but later
    score = await s.redis.zscore(poisoned.deadline_part, poisoned.key)
    assert score is not None
    assert score > ends + 10


async def health_client(s: Scenario, worker: Worker) -> TestClient[Any, Any]:
    """A started client of ``/healthz`` and ``/readyz`` asking about ``worker`` and the store."""
    app = web.Application()
    app[PUBLISHER] = s._publishers[0]
    app[REDIS] = s.store
    app[WORKER] = worker
    add_health_routes(app)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def readiness_becomes(
    client: TestClient[Any, Any], status: int, deadline: float, why: str
) -> None:
    """Poll ``/readyz`` until it answers ``status``; failing with ``why`` past ``deadline``
    (the pause between polls only spaces them: the condition is what is waited on)."""
    while (await client.get("/readyz")).status != status:
        assert time.monotonic() < deadline, why
        await asyncio.sleep(0.1)


async def test_a_failing_sweeper_is_retried_and_shows_in_readiness(s: Scenario) -> None:
    worker = await s.worker(stall_s=0.5)
    client = await health_client(s, worker)
    stop = asyncio.Event()
    sweeping = asyncio.create_task(worker.sweep_forever(stop))
    try:
        await s.redis.set(keys.deadline_summary(7), "not a sorted set")  # every sweep now fails
        deadline = time.monotonic() + 20
        await readiness_becomes(client, 503, deadline, "readiness never showed the failing sweeper")
        body = await (await client.get("/readyz")).json()
        assert body["sweeper"] is False
        assert worker.metrics.sweep_failures._value.get() >= 2  # retried, with a pause

        await s.redis.delete(keys.deadline_summary(7))  # the fault is gone: the sweeper recovers
        await readiness_becomes(client, 200, deadline, "the sweeper never recovered")
    finally:
        stop.set()
        await sweeping
        await client.close()


async def test_batches_failing_for_want_of_the_store_show_in_readiness_until_they_pass(
    s: Scenario,
) -> None:
    """A fault that is not one event's (here a key of the store's holding the wrong type, as
    an ACL or a stray write would leave it) fails every batch: logged and retried, and after
    ``stall_s`` readiness says so, until the batches pass again."""
    worker = await s.worker(stall_s=0.5)
    client = await health_client(s, worker)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await s.redis.hset(keys.LINKS_EPOCH, "not", "a counter")  # every batch reads it
        await s.inbound("wamid.held", s.now - 60)
        deadline = time.monotonic() + 30
        await readiness_becomes(client, 503, deadline, "readiness never showed the failing batches")
        body = await (await client.get("/readyz")).json()
        assert (body["batches"], body["sweeper"]) == (False, True)
        assert worker.processed == 0

        await s.redis.delete(keys.LINKS_EPOCH)  # the fault is gone: the batch goes through
        await readiness_becomes(client, 200, deadline, "the batches never recovered")
        assert worker.processed == 1
    finally:
        stop.set()
        await running
        await client.close()


async def test_a_worker_whose_loops_make_no_progress_is_not_live(s: Scenario) -> None:
    worker = await s.worker(stall_s=0.3)  # started, but its loops never run: stuck
    app = web.Application()
    app[PUBLISHER] = s._publishers[0]
    app[WORKER] = worker
    add_health_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        deadline = time.monotonic() + 10
        while (await client.get("/healthz")).status != 503:
            assert time.monotonic() < deadline, "liveness never noticed the stuck loops"
            await asyncio.sleep(0.05)
        assert (await (await client.get("/healthz")).json())["status"] == "stuck"
    finally:
        await client.close()


async def test_the_first_call_after_a_redis_restart_is_answered(tmp_path: Path) -> None:
    """A pooled connection that the restart dropped is not an error for the caller."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    store = WindowStore(await connect(server.url), EngineConfig())
    try:
        assert await window_view(store, PN, "16505551234", 0) is None
        server.stop()
        server.start()  # same port; the client's pooled connection is now dead
        assert await window_view(store, PN, "16505551234", 0) is None
        assert await store.ping()
    finally:
        await store.redis.aclose()
        server.stop()
