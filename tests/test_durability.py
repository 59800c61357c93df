"""Durable before committed: with a replica, a batch's writes are on the replica before the
worker may commit its offsets, so a failover to that replica loses nothing that was committed.
Real redis-server processes: a primary and its replica, started for the test; the faults
(a stalled replica, a killed primary) are caused with signals."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from wawindow.devservices.redis_server import RedisServer
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.errors import StoreError, StoreNotDurable
from wawindow.redis.connection import connect

pytestmark = [pytest.mark.redis]
KEY = "106540352242922:16505551234"
T = 4_000_000_000


def event(i: int) -> dict[str, Any]:
    return {
        "event_id": f"m{i}",
        "kind": "message",
        "key": KEY,
        "waba_id": "w",
        "phone_number_id": "106540352242922",
        "user": {"wa_id": "16505551234"},
        "timestamp": T + i * 60,
        "data": {"wamid": f"m{i}", "type": "text"},
    }


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = RedisServer(
        tmp_path / "replica", extra_config=(f"replicaof 127.0.0.1 {primary.port}",)
    )
    replica.start()
    link = redis.Redis(port=replica.port)
    replica.wait_until(
        lambda: link.info("replication").get("master_link_status") == "up", 30, "replicating"
    )
    try:
        yield primary, replica
    finally:
        if replica.pid:
            os.kill(replica.pid, signal.SIGCONT)
        replica.stop()
        primary.stop()


async def inbound_on(server: RedisServer) -> list[int]:
    store = WindowStore(await connect(server.url), EngineConfig(durability="none"))
    try:
        return (await store.conversation(KEY)).inbound
    finally:
        await store.redis.aclose()


async def test_auto_waits_for_the_replica_and_a_stalled_replica_holds_the_batch_back(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    store = WindowStore(
        await connect(primary.url), EngineConfig(durability="auto", durability_timeout_ms=300)
    )
    try:
        await store.load()
        await store.apply([(KEY, event(0))], T + 60)
        assert replica.pid
        os.kill(replica.pid, signal.SIGSTOP)  # the replica stalls
        with pytest.raises(StoreNotDurable):
            await store.apply([(KEY, event(1))], T + 120)
        os.kill(replica.pid, signal.SIGCONT)
        await store.apply([(KEY, event(1))], T + 120)  # the worker's retry of the batch
    finally:
        await store.redis.aclose()
    assert await inbound_on(replica) == [T, T + 60]


async def test_a_failover_to_the_replica_under_load_loses_no_confirmed_write(
    pair: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = pair
    store = WindowStore(
        await connect(primary.url), EngineConfig(durability="replicas:1", durability_timeout_ms=500)
    )
    confirmed: list[int] = []

    async def load() -> None:
        for i in range(100_000):
            try:
                await store.apply([(KEY, event(i))], T + i * 60 + 1)
            except (StoreError, StoreNotDurable):
                return  # the primary is gone
            confirmed.append(T + i * 60)

    writing = asyncio.create_task(load())
    deadline = time.monotonic() + 30
    while len(confirmed) < 200:
        assert time.monotonic() < deadline
        assert not writing.done()
        await asyncio.sleep(0.01)
    assert primary.pid
    os.kill(primary.pid, signal.SIGKILL)  # mid-stream
    await asyncio.wait_for(writing, 30)
    await store.redis.aclose()
    redis.Redis(port=replica.port).replicaof("NO", "ONE")  # promote

    on_replica = set(await inbound_on(replica))
    assert len(confirmed) >= 200
    assert set(confirmed) <= on_replica  # every write the engine was told is durable
