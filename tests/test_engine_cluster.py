"""The engine on a real 3-node Redis Cluster: the same rules, unchanged, across nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import RedisCluster

from tests.conftest import Client
from tests.engine_harness import HOUR, Scenario, scenario
from tests.test_engine_failures import USERS, assert_exact, post_traffic
from wawindow.config import Settings
from wawindow.dev import samples
from wawindow.keys import Topics, shard_of

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PN = samples.PHONE_NUMBER_ID


@pytest.fixture
async def s(
    receiver: Client, settings: Settings, topics: Topics, redis_cluster: str
) -> AsyncIterator[Scenario]:
    async with scenario(receiver, settings, topics, redis_cluster) as sc:
        assert isinstance(sc.redis, RedisCluster)
        yield sc


async def test_windows_open_extend_and_close_on_a_cluster(s: Scenario) -> None:
    await s.inbound("wamid.1", s.now - 25 * HOUR)
    await s.inbound("wamid.2", s.now - 60, user="16505550002")
    await s.process()
    await s.sweep()

    types = sorted(await s.event_types())
    assert types == ["service_window.closed", "service_window.opened", "service_window.opened"]


async def test_counts_stay_exact_across_many_users_on_a_cluster(s: Scenario) -> None:
    """Many users spread over the cluster's nodes; every body sent twice."""
    await post_traffic(s)
    await s.process()

    assert len({shard_of(f"{PN}:1650000{u:04d}") for u in range(USERS)}) > 50
    assert_exact(await s.counts(), await s.events())


async def test_a_link_across_nodes_keeps_one_user(s: Scenario) -> None:
    wa, bsuid = "16505551234", "US.13491208655302741918"
    assert shard_of(f"{PN}:{wa}") != shard_of(f"{PN}:{bsuid}")
    await s.post(
        samples.messages_change(messages=[samples.text_message("wamid.1", s.now - 600, wa_id=wa)])
    )
    await s.process()
    await s.post(
        samples.messages_change(
            messages=[samples.text_message("wamid.2", s.now - 60, wa_id=wa, user_id=bsuid)]
        )
    )
    await s.process()

    assert await s.event_types() == ["service_window.opened", "service_window.extended"]
    assert (await s.counts())["service_windows_opened"] == 1


async def test_the_worker_gauges_read_every_primary_of_a_cluster(s: Scenario) -> None:
    for i in range(40):  # users on many shards, so on every node
        await s.inbound(f"wamid.g{i}", s.now - 60, user=f"165055{i:05d}")
    await s.process()
    worker = s.workers[0]

    await worker.observe()

    def gauge(name: str) -> float:
        found = worker.metrics.registry.get_sample_value(name)
        assert found is not None
        return found

    nodes = s.redis.get_primaries()  # type: ignore[union-attr]
    used = 0
    for node in nodes:
        info = await s.redis.info("memory", target_nodes=node)
        used += int(info["used_memory"])
    assert len(nodes) == 3
    assert gauge("wawindow_windows_open") == 40
    # summed over the three primaries, read a moment apart: within 10 % of each other
    assert abs(gauge("wawindow_redis_used_memory_bytes") - used) < used * 0.1
