"""Benchmark: the window engine (one worker process) against real Kafka and Redis.

1. **Throughput, end to end**: consume -> Redis state -> publish transitions -> commit, over
   webhook traffic already on ``webhook-events`` (bench/traffic.py; by default the 2026 mix,
   where items name both a phone number and a BSUID). Beside it, in the same run on the
   same broker: the ceiling (a bare aiokafka consumer that decodes the same records and
   commits per batch) and two peers (bench/peers/: Quix Streams, faust-streaming). The
   benchmark's process (so the worker) runs on core 0, the broker and Redis on core 1; each
   one's CPU per event is reported. ``ids``: the same mix with phone numbers only, by
   turns; ``gc``: Python's collector settings against the worker's, by turns; ``history``:
   the cost of an event on conversations with 5, 60 and 300 facts.
2. **Memory**: Redis bytes per tracked user with an open service window (state, applied event
   ids, deadline entry and counters, measured with INFO memory over 1,000,000 users), per
   exchange, per billed memory, and what each part of an open window's layout costs.
3. **Close lateness**: 1,000,000 windows in the deadline index, spread over the next day,
   plus a sample of windows that end during the run; lateness = when the `closed` event was
   produced (its Kafka timestamp) minus the window's true end; with the worker's collector
   settings, then with Python's.

Usage: python bench/worker_throughput.py [--parts throughput,ids,gc,history] [--mix 2026]
Writes bench/results/worker_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import traffic
from peers.run import PEERS, peer_rate
from wawindow import keys
from wawindow.config import Settings, cache_dir
from wawindow.dev import samples
from wawindow.devservices.stack import LocalServices
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.suppression import SuppressionConfig
from wawindow.engine.worker import Worker
from wawindow.ingest.split import split_body
from wawindow.kafka.publisher import Publisher, Record
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics
from wawindow.redis.connection import AnyRedis, connect
from wawindow.rules.identity import links_of
from wawindow.rules.published import WindowMark
from wawindow.rules.service_window import CSW_SECONDS
from wawindow.rules.state import State
from wawindow.service.roles import tune_gc

HERE = Path(__file__).resolve().parent
DEFAULT_GC = gc.get_threshold()  # Python's, as this process started
RESULTS = HERE / "results" / "worker_throughput.json"


async def produce(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    publisher = Publisher(bootstrap, ack_timeout_ms=60_000)
    await publisher.start()
    try:
        for i in range(0, len(events), 5000):
            await publisher.publish(
                [Record(topic, value, key) for key, value in events[i : i + 5000]]
            )
    finally:
        await publisher.stop()


def _ceiling_consumer(bootstrap: str, source: str) -> AIOKafkaConsumer:
    """A consumer of its own group from the start of ``source``, batches of 500."""
    return AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=f"ceiling-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500,
    )  # fmt: skip


async def _consume_rate(
    bootstrap: str, source: str, count: int, handle: Callable[[list[Any]], Awaitable[None]]
) -> dict[str, float]:
    """A bare aiokafka consumer that runs ``handle`` on each batch of 500 and then commits
    it, timed from the first batch: its records/s and its process's CPU µs per record."""
    consumer = _ceiling_consumer(bootstrap, source)
    await consumer.start()
    seen = 0
    try:
        started = None
        cpu = 0.0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            if started is None:
                started, cpu = time.perf_counter(), time.process_time()
            await handle(records)
            await consumer.commit()
            seen += len(records)
        assert started is not None
        return {
            "events_per_s": seen / (time.perf_counter() - started),
            "cpu_us_per_record": round((time.process_time() - cpu) / seen * 1e6, 1),
        }
    finally:
        await consumer.stop()


async def consume_ceiling(bootstrap: str, source: str, count: int) -> dict[str, float]:
    """A consumer that decodes each record and commits each batch: what a worker could do if
    its own work cost nothing."""

    async def decode(records: list[Any]) -> None:
        for r in records:
            orjson.loads(r.value)

    return await _consume_rate(bootstrap, source, count, decode)


async def ceiling(bootstrap: str, source: str, sink: str, count: int) -> float:
    """Events/s of a bare consume-and-produce loop: one record out per record in."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    await producer.start()

    async def forward(records: list[Any]) -> None:
        await asyncio.gather(*[await producer.send(sink, r.value, key=r.key) for r in records])

    try:
        return (await _consume_rate(bootstrap, source, count, forward))["events_per_s"]
    finally:
        await producer.stop()


async def new_worker(
    bootstrap: str, topics: Topics, redis: AnyRedis, group: str, config: EngineConfig | None = None
) -> tuple[Worker, Publisher]:
    """A worker on ``redis`` with its own started publisher (the caller stops both)."""
    store = WindowStore(redis, config or EngineConfig())
    await store.load()
    publisher = Publisher(bootstrap, ack_timeout_ms=30_000)
    await publisher.start()
    worker = Worker(
        bootstrap=bootstrap,
        topics=topics,
        group_id=group,
        store=store,
        publisher=publisher,
        suppression=SuppressionConfig.of(b"bench-suppression-key"),
    )
    return worker, publisher


class ProcessClock:
    """CPU seconds (user + system, every thread) of other processes, read from /proc."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> dict[str, float]:
        out = {}
        for name, pid in self._pids.items():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime
        return out


def pin(services: LocalServices) -> ProcessClock:
    """The benchmark (and so the worker it runs) on core 0, the broker and Redis on core 1,
    every thread of each; on a machine with one core nothing is pinned."""
    pids = {"kafka": services.kafka.pid, "redis": services.redis.pid}
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
        for pid in pids.values():
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), {1})
    return ProcessClock({k: v for k, v in pids.items() if v is not None})


def collector(tuned: bool) -> None:
    """The collector as `wawindow run worker` sets it once started (``tuned``), or Python's."""
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC)
    if tuned:
        tune_gc(Settings().gc_young_threshold)


async def worker_rate(
    bootstrap: str,
    topics: Topics,
    redis_url: str,
    count: int,
    config: EngineConfig | None = None,
    group: str = "bench",
    others: ProcessClock | None = None,
    tuned_gc: bool = True,
) -> dict[str, Any]:
    """Events/s of one worker over ``count`` records, timed from its first batch, the CPU per
    event of its process (and of ``others``: the broker and Redis) meanwhile, and its batches'
    latency. ``tuned_gc``: the collector as `wawindow run worker` sets it once started (else
    Python's defaults)."""
    redis = await connect(redis_url)
    worker, publisher = await new_worker(bootstrap, topics, redis, group, config)
    await worker.start()
    collector(tuned_gc)
    try:
        while worker.processed == 0:  # joining the group is not part of the rate
            await worker.run_once(1000)
        first = worker.processed
        before = others.read() if others else {}
        started = time.perf_counter()
        cpu = time.process_time()
        latencies: list[float] = []
        while worker.processed < count:
            began = time.perf_counter()
            if await worker.run_once(1000):
                latencies.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - started
        used = time.process_time() - cpu
        timed = worker.processed - first
        if not timed:
            raise RuntimeError(f"the first batch took all {count} records: give it more")
        out: dict[str, Any] = {
            "events": worker.processed,
            "seconds": round(elapsed, 2),
            "events_per_s": round(timed / elapsed),
            "worker_cpu_us_per_event": round(used / timed * 1e6, 1),
            "worker_cpu_share_of_a_core": round(used / elapsed, 2),
            "batch_ms_p50": round(statistics.median(latencies) * 1000, 1),
            "batch_ms_p99": round(sorted(latencies)[int(len(latencies) * 0.99)] * 1000, 1),
        }
        for name, seconds in (others.read() if others else {}).items():
            spent = seconds - before[name]
            out[f"{name}_cpu_us_per_event"] = round(spent / timed * 1e6, 1)
            out[f"{name}_cpu_share_of_a_core"] = round(spent / elapsed, 2)
        return out
    finally:
        await worker.stop()
        await publisher.stop()
        await redis.aclose()


async def redis_growth(
    redis_url: str, users: int, bodies: Any, per_call: int, *, sweep: bool = False
) -> int:
    """Apply ``bodies(u, now)`` for each user through the real script, ``per_call`` users per
    call, acknowledging the outbox as the worker does; return Redis's ``used_memory`` growth."""
    redis = await connect(redis_url)
    await redis.flushdb()
    store = WindowStore(redis, EngineConfig())
    await store.load()
    before = (await redis.info("memory"))["used_memory"]
    now = int(time.time())
    for first in range(0, users, per_call):
        batch = []
        for u in range(first, min(first + per_call, users)):
            raw = samples.encode(samples.body(bodies(u, now)))
            for event in split_body(raw, now * 1000).events:
                batch.append((event.key, orjson.loads(event.encode())))
        report = await store.apply(batch, now)
        await store.acknowledge([o for a in report.applied for o in a.outbox])
    while sweep and (due := await store.deadlines.due(now, limit=2_000)):
        closed, _ = await store.close(due, now)
        await store.acknowledge([o for a in closed for o in a.outbox])
    after = (await redis.info("memory"))["used_memory"]
    await redis.aclose()
    return int(after - before)


async def bytes_per_open_conversation(redis_url: str, users: int) -> dict[str, Any]:
    """Open a window for ``users`` users through the real script; measure Redis's growth."""

    def inbound(u: int, now: int) -> dict[str, Any]:
        message = samples.text_message(f"w{u}", now - 60, wa_id=f"2{u:010d}")
        return samples.messages_change(messages=[message])

    grown = await redis_growth(redis_url, users, inbound, 1000)
    return {
        "users": users,
        "bytes_total": grown,
        "bytes_per_open_conversation": round(grown / users),
    }


def rss_bytes() -> int:
    """This process's resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def worker_memory(redis_url: str, conversations: int) -> dict[str, Any]:
    """The worker's own memory with ``conversations`` conversations seen: each gets a 2026
    exchange (a text and a status naming both ids), in batches of 500 as the worker applies
    them (links, then the events, acknowledgements carried), with the settings' defaults for
    what is kept (decoded states, links, hashed ids). Reports the process's resident memory
    before and after, and what the kept states are counted as."""
    await flush(redis_url)
    redis = await connect(redis_url)
    store = WindowStore(redis, EngineConfig.from_settings(Settings()))
    await store.load()
    now = int(time.time())
    gc.collect()
    before = rss_bytes()
    for first in range(0, conversations, 250):
        raws = traffic.mix_2026(500, 250, now - 3600)  # 250 users, a text and a status each
        events = []
        for _, raw in raws:
            event = orjson.loads(raw)
            user = event["user"]
            u = first + int(user["wa_id"][1:])  # the mix's users renumbered into this batch's
            wa, bsuid = f"1{u:010d}", f"US.{u:016d}"
            event["user"] = {"wa_id": wa, "user_id": bsuid}
            event["key"] = f"{event['phone_number_id']}:{bsuid}"
            event["event_id"] = f"{event['event_id']}.{first}"
            events.append(event)
        pairs = [p for e in events for p in links_of(e)]
        await store.link_many(pairs, now)
        report = await store.apply([(e["key"], e) for e in events], now)
        store.carry([o for a in report.applied for o in a.outbox])
    await store.flush_acknowledged()
    gc.collect()
    after = rss_bytes()
    await redis.flushdb()
    await redis.aclose()
    return {
        "conversations": conversations,
        "rss_before_mb": round(before / 2**20),
        "rss_after_mb": round(after / 2**20),
        "grown_mb": round((after - before) / 2**20),
        "kept_states_counted_mb": round(store._reads.used / 2**20),
        "cache_budget_mb": Settings().worker_cache_mb,
    }


# One open service window as the store writes it (commit.lua): its document (the wa_id the
# key names written as 1), no TTL while it has a deadline, and the member that schedules its
# close in its part of the shard's deadline index.
_OPEN_DOCUMENT = (
    b'{"w":"102290129340398","a":1,"i":[1796139014],'
    b'"s":{"778c77e21cea":1796142614},"pw":{"1796139014":[1796225414,0,0,0]}}'
)
_WA_ID_WRITTEN_OUT = _OPEN_DOCUMENT.replace(b'"a":1', b'"a":"10000000000"')
_WITHOUT_IDS = (
    b'{"i":[1796139014],"s":{"778c77e21cea":1796142614},"pw":{"1796139014":[1796225414,0,0,0]}}'
)


async def layout_costs(redis_url: str, users: int) -> dict[str, Any]:
    """What each part of an open window's layout costs in Redis, and what alternatives would
    save: the same keys as the store's written directly (no rules), one variant at a time.
    ``index``: "parts" (as stored: the deadline index in parts, with the shard's summary),
    "shard" (one deadline index per shard, as before the parts), "" (none); ``ttl``: the
    state with a TTL (as before a state with a deadline went without one)."""
    redis = await connect(redis_url)
    now = int(time.time())

    async def measure(document: bytes, ttl: bool, index: str) -> int:
        await redis.flushdb()
        before = (await redis.info("memory"))["used_memory"]
        for first in range(0, users, 5_000):
            pipe = redis.pipeline(transaction=False)
            for u in range(first, min(first + 5_000, users)):
                conversation = f"106540352242922:1{u:010d}"
                k, due = keys.ConversationKeys.of(conversation), now + 86400 - u % 3600
                value = b"1 " + document
                pipe.set(k.state, value, exat=now + 20 * 86400) if ttl else pipe.set(k.state, value)
                if index == "parts":
                    pipe.zadd(k.deadline_part, {conversation: due})
                    part = str(keys.deadline_part_of(conversation))
                    pipe.zadd(keys.deadline_summary(k.shard), {part: due}, lt=True)
                elif index == "shard":
                    pipe.zadd(f"{{ww:{k.shard}}}:due", {conversation: due})
            await pipe.execute()
        grown = int((await redis.info("memory"))["used_memory"] - before)
        return round(grown / users)

    try:
        out = {
            "users": users,
            "as_stored": await measure(_OPEN_DOCUMENT, ttl=False, index="parts"),
            "with_a_ttl": await measure(_OPEN_DOCUMENT, ttl=True, index="parts"),
            "with_the_wa_id_written_out": await measure(
                _WA_ID_WRITTEN_OUT, ttl=False, index="parts"
            ),
            "one_deadline_index_per_shard": await measure(_OPEN_DOCUMENT, ttl=False, index="shard"),
            "as_stored_before_these_three": await measure(
                _WA_ID_WRITTEN_OUT, ttl=True, index="shard"
            ),
            "without_deadline_member": await measure(_OPEN_DOCUMENT, ttl=False, index=""),
            "without_waba_and_wa_id_in_document": await measure(
                _WITHOUT_IDS, ttl=False, index="parts"
            ),
        }
    finally:
        await redis.flushdb()
        await redis.aclose()
    return out


async def bytes_per_exchange(redis_url: str, users: int) -> dict[str, Any]:
    """A typical service exchange per user through the real script: one inbound message, one
    reply with sent, delivered (priced) and read. Redis's growth per user: the state with its
    window and derived conversation, the pricing ledger entry, deadlines and counters."""
    pricing = samples.pmp_pricing("service", "regular")

    def exchange(u: int, now: int) -> dict[str, Any]:
        wa = f"3{u:010d}"
        return samples.messages_change(
            messages=[samples.text_message(f"in{u}", now - 120, wa_id=wa)],
            statuses=[
                samples.status(f"out{u}", "sent", now - 60, wa_id=wa, pricing=pricing),
                samples.status(f"out{u}", "delivered", now - 59, wa_id=wa, pricing=pricing),
                samples.status(f"out{u}", "read", now - 30, wa_id=wa),
            ],
        )

    grown = await redis_growth(redis_url, users, exchange, 500)
    return {"users": users, "bytes_total": grown, "bytes_per_user_exchange": round(grown / users)}


async def durability_cost(
    bootstrap: str, prefix: str, services: LocalServices, users: int
) -> dict[str, Any]:
    """The worker's events/s with durability ``none`` and ``replicas:1`` (a replica of the
    benchmark's Redis attached for this part), alternately, twice each, on the same records."""
    import tempfile

    from wawindow.devservices.redis_server import RedisServer

    primary_port = int(services.redis_url.rsplit(":", 1)[1].split("/")[0])
    replica = RedisServer(
        Path(tempfile.mkdtemp()) / "replica", extra_config=(f"replicaof 127.0.0.1 {primary_port}",)
    )
    replica.start()
    out: dict[str, list[int]] = {"none": [], "replicas:1": []}
    try:
        for run in range(2):
            for mode in out:
                topics = Topics(f"{prefix}d{run}{mode.replace(':', '')}.")
                await create_topics(bootstrap, topics, partitions=6, replication_factor=1)
                events = traffic.mix_2026(users, users // 2, int(time.time()))
                await produce(bootstrap, topics.webhook_events, events)
                client = await connect(services.redis_url)
                await client.flushdb()
                await client.aclose()
                rate = await worker_rate(
                    bootstrap, topics, services.redis_url, len(events),
                    EngineConfig(durability=mode), group=f"bench-{run}-{mode}",
                )  # fmt: skip
                out[mode].append(rate["events_per_s"])
    finally:
        replica.stop()
    return {"users": users, "events_per_s": out}


async def bytes_per_billed_memory(redis_url: str, users: int) -> dict[str, Any]:
    """The same exchange 9 days ago, swept: what a user costs while their billed message is
    remembered (31 days), once their history (8 days) is over."""
    pricing = samples.pmp_pricing("service", "regular")

    def exchange(u: int, now: int) -> dict[str, Any]:
        wa, t = f"4{u:010d}", now - 9 * 86_400
        return samples.messages_change(
            messages=[samples.text_message(f"in{u}", t - 120, wa_id=wa)],
            statuses=[
                samples.status(f"out{u}", "sent", t - 60, wa_id=wa, pricing=pricing),
                samples.status(f"out{u}", "delivered", t - 59, wa_id=wa, pricing=pricing),
                samples.status(f"out{u}", "read", t - 30, wa_id=wa),
            ],
        )

    grown = await redis_growth(redis_url, users, exchange, 500, sweep=True)
    return {"users": users, "bytes_total": grown, "bytes_per_billed_user": round(grown / users)}


async def close_lateness(
    bootstrap: str, topics: Topics, redis_url: str, scheduled: int, sample: int, tuned_gc: bool
) -> dict[str, Any]:
    await create_topics(bootstrap, topics, partitions=6, replication_factor=1)
    redis = await connect(redis_url)
    await redis.flushdb()

    async def write(first: int, count: int, ends_at: Any) -> None:
        """Windows laid out as the engine leaves them."""
        pipe = redis.pipeline(transaction=False)
        for i in range(first, first + count):
            key = f"{samples.PHONE_NUMBER_ID}:3{i:010d}"
            k = keys.ConversationKeys.of(key)
            ends = ends_at(i)
            state = State(
                waba_id=samples.WABA_ID, wa_id=f"3{i:010d}", inbound=[ends - CSW_SECONDS],
                windows={ends - CSW_SECONDS: WindowMark(ends, warned=1)},  # opened, warned already
            )  # fmt: skip
            pipe.set(k.state, b"1 " + state.encode(key))
            pipe.zadd(k.deadline_part, {key: ends})
            pipe.zadd(
                keys.deadline_summary(k.shard), {str(keys.deadline_part_of(key)): ends}, lt=True
            )
            if len(pipe) >= 20_000:
                await pipe.execute()
                pipe = redis.pipeline(transaction=False)
        await pipe.execute()

    # the background: windows that end over the next day
    loaded = int(time.time())
    await write(0, scheduled, lambda i: loaded + 3600 + (i * 82_000 // scheduled))
    # the sample, scheduled only now: windows that end 20 to 60 s from now
    now = int(time.time())
    await write(scheduled, sample, lambda i: now + 20 + (i % 40))
    index_size = await WindowStore(redis, EngineConfig()).deadlines.open_count()

    worker, publisher = await new_worker(bootstrap, topics, redis, "bench-close")
    collector(tuned_gc)
    stop = asyncio.Event()
    sweeping = asyncio.create_task(worker.sweep_forever(stop))
    consumer = AIOKafkaConsumer(
        topics.window_events, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    lateness: list[float] = []
    try:
        async with asyncio.timeout(180):
            while len(lateness) < sample:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        event = orjson.loads(r.value)
                        if event["type"] == "wawindow.service_window.closed":
                            true_end = datetime.fromisoformat(
                                event["data"]["closed_at"]
                            ).timestamp()
                            lateness.append(r.timestamp / 1000 - true_end)
    finally:
        stop.set()
        await sweeping
        await consumer.stop()
        await publisher.stop()
        await redis.aclose()
    lateness.sort()
    return {
        "collector": "tuned" if tuned_gc else "python",
        "windows_in_index": index_size,
        "closed_measured": len(lateness),
        "p50_s": round(statistics.median(lateness), 3),
        "p99_s": round(lateness[int(len(lateness) * 0.99) - 1], 3),
        "max_s": round(lateness[-1], 3),
    }


def traffic_of(args: argparse.Namespace, now: int) -> list[tuple[bytes, bytes]]:
    if args.mix == "classic":
        return traffic.classic(args.users, now, interleave=args.users)
    return traffic.mix_2026(args.bodies, args.mix_users, now, both_ids=args.mix == "2026")


async def flush(redis_url: str) -> None:
    client = await connect(redis_url)
    await client.flushdb()
    await client.aclose()


async def both_ids_or_none(
    bootstrap: str, prefix: str, redis_url: str, args: argparse.Namespace, clock: ProcessClock
) -> dict[str, Any]:
    """The 2026 mix where every item names both ids, and the same with phone numbers only
    (no identity links), by turns, twice each: the worker's CPU µs per event of each."""
    now = int(time.time())
    out: dict[str, list[float]] = {"both_ids": [], "phone_only": []}
    for run in range(2):
        for name in out:
            topics = Topics(f"{prefix}ids{run}{name}.")
            await create_topics(bootstrap, topics, partitions=6, replication_factor=1)
            events = traffic.mix_2026(args.bodies, args.mix_users, now, both_ids=name == "both_ids")
            await produce(bootstrap, topics.webhook_events, events)
            await flush(redis_url)
            rate = await worker_rate(
                bootstrap, topics, redis_url, len(events), group=f"ids-{run}-{name}", others=clock
            )
            out[name].append(rate["worker_cpu_us_per_event"])
    both, phone = statistics.median(out["both_ids"]), statistics.median(out["phone_only"])
    return {"cpu_us_per_event": out, "ratio_both_to_phone_only": round(both / phone, 2)}


async def collector_settings(
    bootstrap: str, prefix: str, redis_url: str, args: argparse.Namespace, clock: ProcessClock
) -> dict[str, Any]:
    """The 2026 mix with Python's collector settings and with the worker's (start-up frozen,
    a larger young generation), by turns, twice each: CPU per event and batch latency."""
    now = int(time.time())
    events = traffic.mix_2026(args.bodies, args.mix_users, now)
    out: dict[str, list[dict[str, float]]] = {"python_defaults": [], "tuned": []}
    for run in range(2):
        for name in out:
            topics = Topics(f"{prefix}gc{run}{name}.")
            await create_topics(bootstrap, topics, partitions=6, replication_factor=1)
            await produce(bootstrap, topics.webhook_events, events)
            await flush(redis_url)
            rate = await worker_rate(
                bootstrap, topics, redis_url, len(events), group=f"gc-{run}-{name}",
                others=clock, tuned_gc=name == "tuned",
            )  # fmt: skip
            out[name].append(
                {k: rate[k] for k in ("worker_cpu_us_per_event", "batch_ms_p50", "batch_ms_p99")}
            )
    return out


async def with_history(
    bootstrap: str, topics: Topics, redis_url: str, users: int, facts: int
) -> dict[str, Any]:
    """``users`` conversations loaded with ``facts`` facts each (written through the store,
    untimed), then one more inbound text and status each through the worker, timed."""
    await create_topics(bootstrap, topics, partitions=6, replication_factor=1)
    await flush(redis_url)
    now = int(time.time())
    load, timed = traffic.history(users, facts, now)
    redis = await connect(redis_url)
    store = WindowStore(redis, EngineConfig())
    await store.load()
    decoded = [orjson.loads(raw) for _, raw in load]
    pairs = sorted({p for e in decoded for p in links_of(e)})
    await store.link_many(pairs, now)
    for first in range(0, len(decoded), 20_000):
        batch = [(e["key"], e) for e in decoded[first : first + 20_000]]
        report = await store.apply(batch, now)
        await store.acknowledge([o for a in report.applied for o in a.outbox])
    await redis.aclose()
    await produce(bootstrap, topics.webhook_events, timed)
    rate = await worker_rate(bootstrap, topics, redis_url, len(timed), group=f"h{facts}")
    return {"users": users, "facts_loaded": facts, **rate}


async def run(args: argparse.Namespace, services: LocalServices) -> dict[str, Any]:
    bootstrap = services.kafka_bootstrap
    prefix = f"bench.{uuid.uuid4().hex[:8]}."
    topics = Topics(prefix)
    await create_topics(bootstrap, topics, partitions=6, replication_factor=1)
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    }
    parts = set(args.parts.split(","))
    redis_url = services.redis_url
    clock = pin(services)
    if "throughput" in parts:
        events = traffic_of(args, int(time.time()))
        results["mix"] = args.mix
        await produce(bootstrap, topics.webhook_events, events)
        results["events_on_topic"] = len(events)
        sink = Topics(f"{prefix}ceiling.")
        await create_topics(bootstrap, sink, partitions=6, replication_factor=1)
        # the ceiling: consume, decode, commit (no record produced per record
        # read: the worker produces far fewer than it reads); the older consume-and-produce
        # figure beside it, for comparison with earlier results
        ceiling_of = await consume_ceiling(bootstrap, topics.webhook_events, len(events))
        rate = ceiling_of["events_per_s"]
        results["ceiling_events_per_s"] = round(rate)
        results["ceiling_cpu_us_per_record"] = ceiling_of["cpu_us_per_record"]
        results["consume_produce_ceiling_events_per_s"] = round(
            await ceiling(bootstrap, topics.webhook_events, sink.webhook_events, len(events))
        )
        await flush(redis_url)
        results["worker"] = await worker_rate(
            bootstrap, topics, redis_url, len(events), others=clock
        )
        results["worker"]["share_of_ceiling"] = round(results["worker"]["events_per_s"] / rate, 3)
        # the core rules as a Quix Streams and as a faust-streaming application, on the same
        # records (bench/peers/README.md)
        for name in PEERS:
            peer = results[f"{name}_peer"] = await peer_rate(
                name, bootstrap, topics.webhook_events, len(events)
            )
            worker = results["worker"]
            worker[f"rate_to_{name}"] = round(worker["events_per_s"] / peer["events_per_s"], 2)
            worker[f"cpu_to_{name}"] = round(
                worker["worker_cpu_us_per_event"] / peer["cpu_us_per_event"], 2
            )
    if "ids" in parts:
        results["ids"] = await both_ids_or_none(bootstrap, prefix, redis_url, args, clock)
    if "gc" in parts:
        results["gc"] = await collector_settings(bootstrap, prefix, redis_url, args, clock)
    if "history" in parts:
        results["history"] = {
            str(facts): await with_history(
                bootstrap, Topics(f"{prefix}h{facts}."), redis_url, args.history_users, facts
            )
            for facts in (5, 60, 300)
        }
    if "durability" in parts:
        results["durability"] = await durability_cost(bootstrap, prefix, services, args.users)
    if "memory" in parts:
        results["memory"] = await bytes_per_open_conversation(redis_url, args.memory_users)
    if "worker-memory" in parts:
        results["worker_memory"] = await worker_memory(redis_url, args.memory_users)
    if "exchange" in parts:
        results["exchange"] = await bytes_per_exchange(redis_url, args.exchange_users)
    if "billed" in parts:
        results["billed"] = await bytes_per_billed_memory(redis_url, args.exchange_users)
    if "layout" in parts:
        results["layout"] = await layout_costs(redis_url, args.layout_users)
    if "lateness" in parts:
        # the worker's collector settings, then Python's (each on a fresh index)
        for name, tuned in (("close_lateness", True), ("close_lateness_python_gc", False)):
            closing = Topics(f"{prefix}{name}.")
            results[name] = await close_lateness(
                bootstrap, closing, redis_url, args.scheduled, args.sample, tuned
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=40_000, help="users of the classic mix")
    parser.add_argument(
        "--mix", choices=("2026", "2026-phone-only", "classic"), default="2026",
        help="the traffic of the throughput part (bench/traffic.py)",
    )  # fmt: skip
    parser.add_argument("--bodies", type=int, default=40_000, help="bodies of the 2026 mix")
    parser.add_argument("--mix-users", type=int, default=20_000, help="users of the 2026 mix")
    parser.add_argument("--history-users", type=int, default=2_000)
    parser.add_argument("--memory-users", type=int, default=1_000_000)
    parser.add_argument("--exchange-users", type=int, default=100_000)
    parser.add_argument("--layout-users", type=int, default=200_000)
    parser.add_argument("--scheduled", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument(
        "--parts",
        default="throughput,ids,gc,history,durability,memory,worker-memory,exchange,billed,layout,lateness",
        help="which parts to run",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    with LocalServices.create(cache_dir(), kafka_heap_mb=1024) as services:
        results = asyncio.run(run(args, services))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
