"""Reading a test's topics back from the real broker, with deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def read_all(bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> list[Any]:
    """Every record on ``topic`` up to its end offsets as of now, in partition order.

    Anything acknowledged before this call is included, so a test can assert that something
    was *not* stored without waiting for it.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[Any] = []
        async with asyncio.timeout(timeout_s):
            for tp in tps:
                while await consumer.position(tp) < end[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    records.extend(batch.get(tp, []))
        return records
    finally:
        await consumer.stop()


async def wait_for_records(
    bootstrap: str, topic: str, count: int, *, timeout_s: float = 30.0
) -> list[Any]:
    """Read ``topic`` until it holds at least ``count`` records, or fail at the deadline."""
    records: list[Any] = []
    async with asyncio.timeout(timeout_s):
        while True:
            records = await read_all(bootstrap, topic, timeout_s=timeout_s)
            if len(records) >= count:
                return records
            await asyncio.sleep(0.2)


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in described["partitions"])
    finally:
        await admin.close()


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]
