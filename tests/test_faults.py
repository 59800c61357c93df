"""Faults caused mid-stream, counted afterwards: zero lost, zero doubled.

A Meta-like sender keeps posting signed bodies to the real receiver and re-sends every body
that was not answered 200, as Meta does; a real ``wawindow run worker`` process consumes
them into a redis-server of the test's own (AOF on, fsync always), which the test stalls
with SIGSTOP or kills with SIGKILL and restarts on the same port and data. Then every test
counts inbound messages, windows opened and distinct window-event ids against what was sent.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import APP_SECRET, SUPPRESSION_KEY, Client, Services
from tests.kafkautil import read_all
from tests.test_engine_failures import wait_for_lag_zero
from wawindow.dev import samples
from wawindow.devservices.redis_server import RedisServer
from wawindow.finance.counts import read_counters
from wawindow.ingest.signature import HEADER, sign
from wawindow.keys import Topics
from wawindow.redis.connection import connect

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
USERS = 150
MESSAGES = 2  # per user, 10 s apart
GROUP = "faults"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", extra_config=("appendonly yes", "appendfsync always"))
    server.start()
    try:
        yield server
    finally:
        if server.pid:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


@asynccontextmanager
async def on_own_kafka(
    bootstrap: str, redis_url: str, prefix: str, *, replication_factor: int | None
) -> AsyncIterator[tuple[Client, Topics, Services, subprocess.Popen[bytes]]]:
    """The receiver and a worker process on a Kafka of the test's own (which the test will
    break), with its topics; yields the receiver's client, the topics, the services and the
    worker."""
    from aiohttp.test_utils import TestClient, TestServer

    from tests.apps import create_app
    from tests.conftest import VERIFY_TOKEN
    from wawindow.config import Settings
    from wawindow.kafka.topics import create_topics

    topics = Topics(prefix)
    settings = Settings.from_env({
        "WAWINDOW_KAFKA_BOOTSTRAP": bootstrap, "WAWINDOW_APP_SECRETS": APP_SECRET,
        "WAWINDOW_VERIFY_TOKEN": VERIFY_TOKEN, "WAWINDOW_TOPIC_PREFIX": prefix,
        "WAWINDOW_KAFKA_ACK_TIMEOUT_MS": "3000",
    })  # fmt: skip
    own = Services(bootstrap, redis_url, None)
    await create_topics(bootstrap, topics, partitions=3, replication_factor=replication_factor)
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    worker = start_worker(own, topics, redis_url)
    try:
        yield client, topics, own, worker
    finally:
        await client.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(40)


def bodies(now: int) -> list[bytes]:
    out = []
    for m in range(MESSAGES):
        for u in range(USERS):
            message = samples.text_message(
                f"wamid.u{u}.m{m}", now - 600 + 10 * m, wa_id=f"1650000{u:04d}"
            )
            out.append(samples.encode(samples.body(samples.messages_change(messages=[message]))))
    return out


async def send_like_meta(
    client: Client, raws: list[bytes], on_progress: Callable[[int], Any] | None = None
) -> int:
    """Post each body until it is answered 200, re-sending on any other answer or a broken
    connection (Meta backs off; a bounded number of tries here). Returns the posts made."""
    posts = 0
    for i, raw in enumerate(raws):
        for attempt in range(200):
            posts += 1
            try:
                response = await client.post(
                    "/webhook", data=io.BytesIO(raw), headers={HEADER: sign(raw, APP_SECRET)}
                )
                if response.status == 200:
                    break
            except OSError:
                pass
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))  # Meta's backoff, shortened
        else:
            pytest.fail(f"body {i} was never accepted")
        if on_progress is not None:
            await on_progress(i + 1)
    return posts


def start_worker(services: Services, topics: Topics, redis_url: str) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")},
        "WAWINDOW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "WAWINDOW_REDIS_URL": redis_url,
        "WAWINDOW_TOPIC_PREFIX": topics.prefix,
        "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
        "WAWINDOW_WORKER_GROUP": GROUP,
        "WAWINDOW_WORKER_BATCH_SIZE": "20",
        "WAWINDOW_HTTP_HOST": "127.0.0.1",
        "WAWINDOW_HTTP_PORT": "0",
        "WAWINDOW_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "wawindow", "run", "worker"], env=env)


async def assert_exact(services: Services, topics: Topics, redis_url: str) -> None:
    redis = await connect(redis_url)
    try:
        today = int(time.time()) // 86_400
        rows = await read_counters(redis, today - 1, today + 1)
    finally:
        await redis.aclose()
    counts = Counter({r.metric: 0 for r in rows})
    for r in rows:
        counts[r.metric] += r.count
    assert counts["inbound_messages"] == USERS * MESSAGES  # none lost, none doubled
    assert counts["service_windows_opened"] == USERS
    events = [orjson.loads(r.value) for r in await read_all(services.kafka_bootstrap,
                                                            topics.window_events)]  # fmt: skip
    kinds = Counter(e["type"] for e in {e["id"]: e for e in events}.values())
    assert kinds == {
        "wawindow.service_window.opened": USERS,
        "wawindow.service_window.extended": USERS * (MESSAGES - 1),
    }


async def worker_at_work(
    services: Services, topics: Topics, worker: subprocess.Popen[bytes]
) -> None:
    """Wait (bounded) until the worker has published window events: the fault then lands
    mid-stream, not before the worker even started."""
    for _ in range(300):
        assert worker.poll() is None, "the worker died"
        if await read_all(services.kafka_bootstrap, topics.window_events):
            return
        await asyncio.sleep(0.1)
    pytest.fail("the worker never started working")


@pytest.fixture
async def running(
    receiver: Client, topics: Topics, services: Services, own_redis: RedisServer
) -> AsyncIterator[tuple[subprocess.Popen[bytes], RedisServer]]:
    worker = start_worker(services, topics, own_redis.url)
    try:
        yield worker, own_redis
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(40)


async def test_a_stalled_redis_loses_and_doubles_nothing(
    receiver: Client, topics: Topics, services: Services, running: Any
) -> None:
    worker, redis_server = running
    raws = bodies(int(time.time()))

    async def stall_a_third_in(sent: int) -> None:
        if sent == len(raws) // 3:
            await worker_at_work(services, topics, worker)
            os.kill(redis_server.pid, signal.SIGSTOP)  # Redis hangs: no answer, no error

    await send_like_meta(receiver, raws, stall_a_third_in)
    os.kill(redis_server.pid, signal.SIGCONT)
    await wait_for_lag_zero(services.kafka_bootstrap, GROUP, topics.webhook_events, worker)
    assert worker.poll() is None, "the worker died"
    await assert_exact(services, topics, redis_server.url)


async def test_a_killed_redis_restarted_on_its_aof_loses_and_doubles_nothing(
    receiver: Client, topics: Topics, services: Services, running: Any
) -> None:
    worker, redis_server = running
    raws = bodies(int(time.time()))

    async def kill_a_third_in(sent: int) -> None:
        if sent == len(raws) // 3:
            await worker_at_work(services, topics, worker)
            os.kill(redis_server.pid, signal.SIGKILL)
            redis_server.stop()

    await send_like_meta(receiver, raws, kill_a_third_in)
    redis_server.start()  # same port, same directory: its AOF
    await wait_for_lag_zero(services.kafka_bootstrap, GROUP, topics.webhook_events, worker)
    assert worker.poll() is None, "the worker died"
    await assert_exact(services, topics, redis_server.url)


async def test_a_killed_broker_restarted_loses_and_doubles_nothing(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """The receiver answers 503 while the broker is gone, the sender re-sends, the worker
    reconnects: the broker is SIGKILLed a third of the way in and restarted on its data."""

    from wawindow.config import cache_dir
    from wawindow.devservices.broker import KafkaBroker, fetch_jars

    broker = KafkaBroker(fetch_jars(cache_dir()), tmp_path / "kafka", heap_mb=384)
    broker.start()
    try:
        async with on_own_kafka(
            broker.bootstrap, own_redis.url, "faults.", replication_factor=1
        ) as (client, topics, own, worker):
            raws = bodies(int(time.time()))
            killed = asyncio.Event()

            async def kill_a_third_in(sent: int) -> None:
                if sent == len(raws) // 3:
                    await worker_at_work(own, topics, worker)
                    assert broker.pid
                    os.kill(broker.pid, signal.SIGKILL)
                    broker.stop()
                    killed.set()

            task = asyncio.create_task(send_like_meta(client, raws, kill_a_third_in))
            await asyncio.wait({task, asyncio.create_task(killed.wait())}, timeout=120,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            assert killed.is_set()
            # back on the same ports and data while the sender keeps re-sending what got 503
            await asyncio.to_thread(broker.start)
            posts = await asyncio.wait_for(task, 300)
            assert posts > len(raws), "no body was ever refused: the fault missed the stream"
            await wait_for_lag_zero(broker.bootstrap, GROUP, topics.webhook_events, worker)
            assert worker.poll() is None, "the worker died"
            await assert_exact(own, topics, own_redis.url)
    finally:
        broker.stop()


@pytest.mark.faults
async def test_closes_stay_within_2_s_of_expiry_across_a_worker_restart(
    receiver: Client, topics: Topics, services: Services, own_redis: RedisServer
) -> None:
    """A worker SIGKILLed and replaced while windows are about to end: the new worker's
    sweeper closes them on time, without waiting for the group to give it partitions (which
    waits for the dead member's session to time out). Timed, so it runs in ``make faults``."""
    first = start_worker(services, topics, own_redis.url)
    ends = int(time.time()) + 12
    raws = []
    for u in range(20):
        message = samples.text_message(f"wamid.r{u}", ends - 24 * 3600, wa_id=f"1650001{u:04d}")
        raws.append(samples.encode(samples.body(samples.messages_change(messages=[message]))))
    second = None
    try:
        await send_like_meta(receiver, raws)
        await worker_at_work(services, topics, first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start_worker(services, topics, own_redis.url)
        closed: dict[str, float] = {}
        for _ in range(600):
            for r in await read_all(services.kafka_bootstrap, topics.window_events):
                event = orjson.loads(r.value)
                if event["type"] == "wawindow.service_window.closed":
                    closed[event["subject"]] = r.timestamp / 1000 - ends
            if len(closed) == len(raws):
                break
            assert second.poll() is None, "the new worker died"
            await asyncio.sleep(0.1)
        assert len(closed) == len(raws)
        assert max(closed.values()) < 2.0, closed
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(40)


async def test_a_black_holed_link_to_redis_loses_and_doubles_nothing(
    receiver: Client, topics: Topics, services: Services, own_redis: RedisServer, tmp_path: Path
) -> None:
    """The worker reaches Redis through Toxiproxy; a third of the way in, the link turns into
    a black hole (connections stay open, nothing is answered: what a half-open connection
    does), and is healed once the sender is done."""
    from wawindow.config import cache_dir
    from wawindow.devservices.toxiproxy import Toxiproxy

    proxy = Toxiproxy(cache_dir() / "bin" / "toxiproxy-server", tmp_path)
    proxy.start()
    port = proxy.proxy("redis", own_redis.port)
    worker = start_worker(services, topics, f"redis://127.0.0.1:{port}/0")
    try:
        raws = bodies(int(time.time()))

        async def cut_a_third_in(sent: int) -> None:
            if sent == len(raws) // 3:
                await worker_at_work(services, topics, worker)
                proxy.black_hole("redis")

        await send_like_meta(receiver, raws, cut_a_third_in)
        from tests.test_engine_failures import group_lag

        lag = await group_lag(services.kafka_bootstrap, GROUP, topics.webhook_events)
        assert lag > 0, "the worker caught up through the black hole: the fault missed"
        proxy.heal("redis")
        await wait_for_lag_zero(services.kafka_bootstrap, GROUP, topics.webhook_events, worker)
        assert worker.poll() is None, "the worker died"
        await assert_exact(services, topics, own_redis.url)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(40)
        proxy.stop()


@pytest.mark.faults
async def test_a_partition_leader_killed_in_a_3_broker_cluster_loses_and_doubles_nothing(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """Three KRaft brokers, topics with replication factor 3 and ``min.insync.replicas`` 2;
    the leader of ``webhook-events`` partition 0 is SIGKILLed a third of the way in and
    stays dead. Slow (three brokers on two cores), so it runs in ``make faults``."""
    from aiokafka.admin import AIOKafkaAdminClient

    from wawindow.config import cache_dir
    from wawindow.devservices.broker import KafkaCluster, fetch_jars

    cluster = KafkaCluster(fetch_jars(cache_dir()), tmp_path / "kafka")
    await asyncio.to_thread(cluster.start)
    try:
        async with on_own_kafka(
            cluster.bootstrap, own_redis.url, "faults3.", replication_factor=None
        ) as (client, topics, own, worker):
            raws = bodies(int(time.time()))
            killed: list[int] = []

            async def kill_the_leader_a_third_in(sent: int) -> None:
                if sent != len(raws) // 3:
                    return
                await worker_at_work(own, topics, worker)
                admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
                await admin.start()
                try:
                    [described] = await admin.describe_topics([topics.webhook_events])
                finally:
                    await admin.close()
                assert len(described["partitions"][0]["replicas"]) == 3
                leader = next(p["leader"] for p in described["partitions"] if p["partition"] == 0)
                broker = cluster.brokers[leader - 1]
                assert broker.pid
                os.kill(broker.pid, signal.SIGKILL)
                killed.append(leader)

            await send_like_meta(client, raws, kill_the_leader_a_third_in)
            assert killed, "the leader was never killed"
            await wait_for_lag_zero(cluster.bootstrap, GROUP, topics.webhook_events, worker)
            assert worker.poll() is None, "the worker died"
            await assert_exact(own, topics, own_redis.url)
    finally:
        cluster.stop()
