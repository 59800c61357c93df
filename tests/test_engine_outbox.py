"""Outbox entries Kafka acknowledged are dropped by the worker's next write, or on their own
when it goes idle: never left for the stale-outbox sweep to publish again."""

from __future__ import annotations

import pytest

from tests.engine_harness import Scenario
from wawindow import keys
from wawindow.redis.connection import text

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


async def outbox_fields(s: Scenario) -> set[str]:
    out: set[str] = set()
    for shard in range(keys.SHARDS):
        out |= {text(f) for f in await s.redis.hkeys(keys.outbox(shard))}
    return out


async def test_acknowledged_entries_go_with_the_next_batch_or_when_idle(s: Scenario) -> None:
    await s.inbound("wamid.1", s.now - 600, user="16505550001")
    await s.process()
    first = await outbox_fields(s)
    assert len(first) == 1  # published and acknowledged, carried to the next write

    await s.inbound("wamid.2", s.now - 500, user="16505550002")
    await s.process()
    second = await outbox_fields(s)
    assert len(second) == 1
    assert not second & first  # the next batch's write dropped it

    assert await s.workers[0].run_once(100) == 0  # an idle turn
    assert await outbox_fields(s) == set()
    assert await s.sweep(s.now + 3600) == 0  # nothing stale to publish again
    assert [e["type"] for e in await s.events()] == ["wawindow.service_window.opened"] * 2


async def test_a_stopping_worker_drops_what_it_carries(s: Scenario) -> None:
    await s.inbound("wamid.1", s.now - 600)
    await s.process()
    assert len(await outbox_fields(s)) == 1

    await s.workers[0].stop()

    assert await outbox_fields(s) == set()
