"""The engine when things go wrong: a worker killed mid-run, two workers at once, poison
records. Real Kafka, real Redis, real worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import SUPPRESSION_KEY, Services, redis_db1
from tests.engine_harness import Scenario
from tests.kafkautil import partitions_of, read_all
from wawindow import keys
from wawindow.dev import samples

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

USERS = 120
MESSAGES_PER_USER = 3


async def post_traffic(s: Scenario) -> None:
    """USERS users write MESSAGES_PER_USER times each, 10 s apart; every body is sent twice,
    as Meta's retries do."""
    for m in range(MESSAGES_PER_USER):
        for first in range(0, USERS, 30):
            messages = [
                samples.text_message(
                    f"wamid.u{u}.m{m}", s.now - 600 + 10 * m, wa_id=f"1650000{u:04d}"
                )
                for u in range(first, min(first + 30, USERS))
            ]
            change = samples.messages_change(messages=messages)
            await s.post(change)
            await s.post(change)


async def group_lag(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        from aiokafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        end = await consumer.end_offsets(tps)
        return sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()


async def wait_for_lag_zero(
    bootstrap: str, group: str, topic: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait, a bounded number of times, until ``group`` has committed all of ``topic``."""
    for _ in range(600):
        assert proc is None or proc.poll() is None, "the worker died"
        if await group_lag(bootstrap, group, topic) == 0:
            return
        await asyncio.sleep(0.1)
    pytest.fail("the worker never caught up")


def assert_exact(counts: Counter[str], events: list[dict[str, object]]) -> None:
    assert counts["inbound_messages"] == USERS * MESSAGES_PER_USER
    assert counts["service_windows_opened"] == USERS
    by_id = {e["id"]: e for e in events}
    kinds = Counter(str(e["type"]) for e in by_id.values())
    assert kinds == {
        "wawindow.service_window.opened": USERS,
        "wawindow.service_window.extended": USERS * (MESSAGES_PER_USER - 1),
    }


def start_worker(s: Scenario, services: Services, group: str) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")},
        "WAWINDOW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "WAWINDOW_REDIS_URL": redis_db1(services),
        "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
        "WAWINDOW_TOPIC_PREFIX": s.topics.prefix,
        "WAWINDOW_WORKER_GROUP": group,
        "WAWINDOW_WORKER_BATCH_SIZE": "10",
        "WAWINDOW_HTTP_HOST": "127.0.0.1",
        "WAWINDOW_HTTP_PORT": "0",
        "WAWINDOW_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "wawindow", "run", "worker"], env=env)


async def test_a_worker_killed_mid_run_loses_nothing_and_counts_nothing_twice(
    s: Scenario, services: Services
) -> None:
    await post_traffic(s)
    group = "crash"

    first = start_worker(s, services, group)
    try:
        for _ in range(600):  # kill it once it has published part of the work
            published = len(await read_all(services.kafka_bootstrap, s.topics.window_events))
            if published >= USERS // 2:
                break
            assert first.poll() is None
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert await group_lag(services.kafka_bootstrap, group, s.topics.webhook_events) > 0, (
            "the kill came after the end: the test proved nothing"
        )
    finally:
        if first.poll() is None:
            first.kill()

    second = start_worker(s, services, group)
    try:
        await wait_for_lag_zero(services.kafka_bootstrap, group, s.topics.webhook_events, second)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0

    events = [
        orjson.loads(r.value)
        for r in await read_all(services.kafka_bootstrap, s.topics.window_events)
    ]
    assert_exact(await s.counts(), events)
    # repeats after the crash, if any, carry the ids of their first publication
    assert len(events) >= len({e["id"] for e in events})


async def test_two_workers_in_one_group_count_exactly(s: Scenario) -> None:
    await post_traffic(s)
    one, two = await s.worker("pair"), await s.worker("pair")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in (one, two)]
    try:
        assert s.settings.kafka_bootstrap
        await wait_for_lag_zero(s.settings.kafka_bootstrap, "pair", s.topics.webhook_events)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert one.processed > 0
    assert two.processed > 0
    events = await s.events()
    assert_exact(await s.counts(), events)
    assert len(events) == len({e["id"] for e in events})


async def test_poison_records_go_to_dead_letter_and_the_rest_goes_on(s: Scenario) -> None:
    assert s.settings.kafka_bootstrap
    good = samples.messages_change(messages=[samples.text_message("wamid.good", s.now - 60)])
    producer = AIOKafkaProducer(bootstrap_servers=s.settings.kafka_bootstrap)
    await producer.start()
    try:
        key = f"{samples.PHONE_NUMBER_ID}:16505551234".encode()
        await producer.send_and_wait(s.topics.webhook_events, b"not json", key=key)
        broken = {
            "event_id": "x",
            "key": key.decode(),
            "kind": "message",
            "timestamp": "soon",
            "data": {},
        }
        await producer.send_and_wait(s.topics.webhook_events, orjson.dumps(broken), key=key)
    finally:
        await producer.stop()
    await s.post(good)

    await s.process()

    assert await s.event_types() == ["service_window.opened"]
    dead = await s.dead_letters()
    assert [r.value for r in dead][:1] == [b"not json"]
    reasons = [dict(r.headers)["reason"].decode() for r in dead]
    assert len(dead) == 2
    assert reasons[0].startswith("unreadable event")
    assert "event x has no Unix timestamp" in reasons[1]  # refused before it is applied
    assert all(dict(r.headers)["source"] == b"worker" for r in dead)


async def test_a_worker_joining_mid_stream_rebalances_without_loss_or_double_counts(
    s: Scenario,
) -> None:
    """A second worker joins while the first is busy: partitions move between them mid-run."""
    await post_traffic(s)
    assert s.settings.kafka_bootstrap
    first = await s.worker("join")
    stop = asyncio.Event()
    running = [asyncio.create_task(first.run(stop))]
    try:
        for _ in range(600):
            if first.processed > 0:
                break
            await asyncio.sleep(0.05)
        second = await s.worker("join")
        running.append(asyncio.create_task(second.run(stop)))
        await wait_for_lag_zero(s.settings.kafka_bootstrap, "join", s.topics.webhook_events)
    finally:
        stop.set()
        await asyncio.gather(*running)

    assert_exact(await s.counts(), await s.events())


async def test_every_key_the_engine_writes_has_a_ttl_or_a_deadline(s: Scenario) -> None:
    """A key the engine writes expires, except a state while it has a deadline (its member
    in the deadline index stands for it) and the index itself (a part that loses its last
    member is gone); the sweep at the last deadline gives the state its TTL."""
    await s.inbound("wamid.1", s.now - 600)
    await s.status(
        "wamid.o1",
        "delivered",
        s.now - 500,
        pricing=samples.pmp_pricing("service", "free_customer_service"),
    )
    await s.post(samples.preference("16505551234", "stop", s.now - 400))
    await s.process()

    async def without_ttl() -> set[str]:
        found = [k async for k in s.redis.scan_iter(count=1000)]
        assert found
        return {k.decode() for k in found if await s.redis.ttl(k) < 0}

    state = keys.ConversationKeys.of(f"{samples.PHONE_NUMBER_ID}:16505551234")
    assert await without_ttl() == {
        state.state,
        state.deadline_part,
        keys.deadline_summary(state.shard),
    }
    assert await s.redis.zscore(state.deadline_part, state.key) is not None

    for days in (2, 10):  # the window's close, then the end of its history
        await s.sweep(s.now + days * 86_400)
    assert await without_ttl() == set()
    assert await s.redis.ttl(state.state) > 0
