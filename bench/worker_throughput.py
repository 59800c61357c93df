"""Benchmark: the window engine (one worker process) against real Kafka and Redis.

1. **Throughput, end to end**: consume -> Redis state -> publish transitions -> commit, over a
   realistic mix of normalized events already on ``webhook-events`` (per user: one inbound
   message, one outbound message with sent/delivered/read statuses and pricing, one in ten
   delivered twice as Meta's retries are), users interleaved as in live traffic. Beside it, in
   the same run on the same broker: the ceiling (a bare aiokafka consumer that decodes the
   same records and commits per batch) and the Quix Streams peer (bench/peers/).
2. **Memory**: Redis bytes per tracked user with an open service window (state, applied event
   ids, deadline entry and counters, measured with INFO memory over 1,000,000 users), per
   exchange, per billed memory, and what each part of an open window's layout costs.
3. **Close lateness**: 1,000,000 windows in the deadline index, spread over the next day,
   plus a sample of windows that end during the run; lateness = when the `closed` event was
   produced (its Kafka timestamp) minus the window's true end.

Usage: python bench/worker_throughput.py [--users 40000] [--scheduled 1000000]
Writes bench/results/worker_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
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

from wawindow import keys
from wawindow.config import cache_dir
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
from wawindow.rules.service_window import CSW_SECONDS
from wawindow.rules.state import State

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "worker_throughput.json"


def realistic_events(users: int, now: int, *, interleave: int = 500) -> list[tuple[bytes, bytes]]:
    """(key, encoded event) in arrival order: per user an inbound message, then a reply with
    sent, delivered and read statuses; every tenth user's statuses arrive twice. Users are
    interleaved as in live traffic: within each block of ``interleave`` users, the first
    event of each, then the second of each, and so on (``interleave=1``: grouped by user)."""
    per_user: list[list[tuple[bytes, bytes]]] = []
    for u in range(users):
        out: list[tuple[bytes, bytes]] = []
        per_user.append(out)
        wa = f"1{u:010d}"
        t = now - 3600 + (u % 1800)
        pricing = samples.pmp_pricing("service", "free_customer_service")
        changes = [
            samples.messages_change(
                contacts=[samples.contact(wa)],
                messages=[samples.text_message(f"wamid.in{u}", t, wa_id=wa)],
            ),
            samples.messages_change(
                statuses=[
                    samples.status(f"wamid.out{u}", "sent", t + 30, wa_id=wa, pricing=pricing),
                    samples.status(f"wamid.out{u}", "delivered", t + 31, wa_id=wa, pricing=pricing),
                    samples.status(f"wamid.out{u}", "read", t + 40, wa_id=wa),
                ]
            ),
        ]
        if u % 10 == 0:
            changes.append(changes[1])
        for change in changes:
            for event in split_body(samples.encode(samples.body(change)), now * 1000).events:
                out.append((event.key.encode(), event.encode()))
    arrivals: list[tuple[bytes, bytes]] = []
    for start in range(0, users, interleave):
        block = per_user[start : start + interleave]
        for k in range(max(len(b) for b in block)):
            arrivals += [b[k] for b in block if k < len(b)]
    return arrivals


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
) -> float:
    """Events/s of a bare aiokafka consumer that runs ``handle`` on each batch of 500 and
    then commits it, timed from the first batch."""
    consumer = _ceiling_consumer(bootstrap, source)
    await consumer.start()
    seen = 0
    try:
        started = None
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            started = started or time.perf_counter()
            await handle(records)
            await consumer.commit()
            seen += len(records)
        assert started is not None
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def consume_ceiling(bootstrap: str, source: str, count: int) -> float:
    """Events/s of a consumer that decodes each record and commits each batch: what a worker
    could do if its own work cost nothing."""

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
        return await _consume_rate(bootstrap, source, count, forward)
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


async def worker_rate(
    bootstrap: str,
    topics: Topics,
    redis_url: str,
    count: int,
    config: EngineConfig | None = None,
    group: str = "bench",
) -> dict[str, Any]:
    redis = await connect(redis_url)
    worker, publisher = await new_worker(bootstrap, topics, redis, group, config)
    await worker.start()
    try:
        while worker.processed == 0:  # joining the group is not part of the rate
            await worker.run_once(1000)
        first = worker.processed
        started = time.perf_counter()
        cpu = time.process_time()
        while worker.processed < count:
            await worker.run_once(1000)
        elapsed = time.perf_counter() - started
        timed = worker.processed - first
        return {
            "events": worker.processed,
            "seconds": round(elapsed, 2),
            "events_per_s": round(timed / elapsed),
            "worker_cpu_us_per_event": round((time.process_time() - cpu) / timed * 1e6, 1),
        }
    finally:
        await worker.stop()
        await publisher.stop()
        await redis.aclose()


async def peer_rate(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """Events/s of the Quix Streams peer (bench/peers/quix_window.py) over the same records:
    run in its own process, with the Python of ``.venv-peers`` (created here when missing,
    refreshed when bench/peers/requirements.txt changes), a fresh consumer group and state
    directory. Its JSON report is returned as it printed it."""
    import shutil
    import tempfile

    root = HERE.parent
    venv = root / ".venv-peers"
    python = venv / "bin" / "python"
    requirements = HERE / "peers" / "requirements.txt"
    installed = venv / "installed-requirements.txt"

    async def call(argv: list[str], timeout_s: float) -> bytes:
        """Run ``argv`` to the end within ``timeout_s``; its stdout, or an error with its
        stderr when it fails."""
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=root, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"{argv[0]} {argv[1]} did not finish in {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace")[-4000:]
            raise RuntimeError(f"{' '.join(argv[:3])} exited with {proc.returncode}:\n{tail}")
        return out

    wanted = await asyncio.to_thread(requirements.read_text)
    if not await asyncio.to_thread(python.exists):
        await call([sys.executable, "-m", "venv", str(venv)], 300)
    if not await asyncio.to_thread(installed.exists) or (
        await asyncio.to_thread(installed.read_text) != wanted
    ):
        pip = str(venv / "bin" / "pip")
        await call([pip, "install", "-q", "-r", str(requirements)], 900)
        await asyncio.to_thread(installed.write_text, wanted)
    state_dir = await asyncio.to_thread(tempfile.mkdtemp, prefix="wawindow-peer-")
    try:
        out = await call(
            [
                str(python), str(HERE / "peers" / "quix_window.py"),
                "--bootstrap", bootstrap, "--topic", topic, "--count", str(count),
                "--group", f"peer-{uuid.uuid4().hex[:6]}", "--state-dir", state_dir,
            ],
            20 * 60,
        )  # fmt: skip
    finally:
        await asyncio.to_thread(shutil.rmtree, state_dir, True)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the peer printed no report: {out.decode()[-2000:]!r}")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


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
                events = realistic_events(users, int(time.time()))
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
    bootstrap: str, topics: Topics, redis_url: str, scheduled: int, sample: int
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
                windows={ends - CSW_SECONDS: [ends, 0, 1, 0]},  # opened, warned already
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
        "windows_in_index": index_size,
        "closed_measured": len(lateness),
        "p50_s": round(statistics.median(lateness), 3),
        "p99_s": round(lateness[int(len(lateness) * 0.99) - 1], 3),
        "max_s": round(lateness[-1], 3),
    }


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
    if "throughput" in parts:
        now = int(time.time())
        block = 1 if args.grouped else args.interleave or args.users
        events = realistic_events(args.users, now, interleave=block)
        results["order"] = (
            "grouped by user" if block == 1 else f"interleaved, blocks of {block} users"
        )
        await produce(bootstrap, topics.webhook_events, events)
        results["events_on_topic"] = len(events)
        results["users"] = args.users
        sink = Topics(f"{prefix}ceiling.")
        await create_topics(bootstrap, sink, partitions=6, replication_factor=1)
        # the ceiling: consume, decode, commit (no record produced per record
        # read: the worker produces far fewer than it reads); the older consume-and-produce
        # figure beside it, for comparison with earlier results
        rate = await consume_ceiling(bootstrap, topics.webhook_events, len(events))
        results["ceiling_events_per_s"] = round(rate)
        results["consume_produce_ceiling_events_per_s"] = round(
            await ceiling(bootstrap, topics.webhook_events, sink.webhook_events, len(events))
        )
        client = await connect(redis_url)
        await client.flushdb()
        await client.aclose()
        results["worker"] = await worker_rate(bootstrap, topics, redis_url, len(events))
        results["worker"]["share_of_ceiling"] = round(results["worker"]["events_per_s"] / rate, 3)
        # the core rules as a Quix Streams application, on the same records
        results["peer"] = await peer_rate(bootstrap, topics.webhook_events, len(events))
        results["worker"]["ratio_to_peer"] = round(
            results["worker"]["events_per_s"] / results["peer"]["events_per_s"], 2
        )
    if "durability" in parts:
        results["durability"] = await durability_cost(bootstrap, prefix, services, args.users)
    if "memory" in parts:
        results["memory"] = await bytes_per_open_conversation(redis_url, args.memory_users)
    if "exchange" in parts:
        results["exchange"] = await bytes_per_exchange(redis_url, args.exchange_users)
    if "billed" in parts:
        results["billed"] = await bytes_per_billed_memory(redis_url, args.exchange_users)
    if "layout" in parts:
        results["layout"] = await layout_costs(redis_url, args.layout_users)
    if "lateness" in parts:
        closing = Topics(f"{prefix}close.")
        results["close_lateness"] = await close_lateness(
            bootstrap, closing, redis_url, args.scheduled, args.sample
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--memory-users", type=int, default=1_000_000)
    parser.add_argument("--exchange-users", type=int, default=100_000)
    parser.add_argument("--layout-users", type=int, default=200_000)
    parser.add_argument("--scheduled", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument(
        "--parts",
        default="throughput,durability,memory,exchange,billed,layout,lateness",
        help="which parts to run",
    )
    parser.add_argument(
        "--interleave", type=int, default=0,
        help="users per block whose events interleave (default: all of them, as live traffic)",
    )  # fmt: skip
    parser.add_argument(
        "--grouped", action="store_true", help="each user's events together (not interleaved)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    with LocalServices.create(cache_dir(), kafka_heap_mb=1024) as services:
        results = asyncio.run(run(args, services))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
