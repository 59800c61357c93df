"""A peer of wawindow's worker, written as a Faust application (faust-streaming, the
maintained fork, which runs on aiokafka like wawindow): the same core service window rules
as quix_window.py over the same ``webhook-events`` records, keyed by conversation, with the
conversation's state in a Faust table (the in-memory store, backed by its changelog topic).

Per conversation (one Kafka record key), in one table entry:

- an inbound ``message`` opens the 24-hour window (``opened``) if none is open at its time,
  or extends it (``extended``) when it is later than the last inbound message; an older one
  moves nothing;
- an event at or after the end of the open window closes it first (``closed``, lazily: the
  window closes only when its conversation's next event arrives, as in quix_window.py);
- inbound messages and ``delivered`` statuses are counted;
- an ``event_id`` already applied to the conversation is ignored (no transition, no count).

Each transition is produced to the output topic as JSON, keyed by the conversation.

Run it under a Python with faust-streaming installed (see faust-requirements.txt); it does
not use the wawindow package. It consumes ``--topic`` from the earliest offset in its own
consumer group (the Faust app id), stops once it has processed ``--count`` records and
prints one JSON line with its rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import faust  # type: ignore[import-not-found]
import faust.streams  # type: ignore[import-not-found]
import orjson
from aiokafka.admin import AIOKafkaAdminClient

# the peers' shared rules (bench/peers/window_rules.py), found from this script's bench/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from peers.window_rules import apply_event, new_conversation, report

# Faust's documented defaults, written out so that the report says what was measured:
# at-least-once processing, offsets committed every 2.8 s or 10,000 records (after the
# producer is flushed, so transitions and changelog are acknowledged first), tables in
# memory and backed by their changelog topics. Records are read as bytes and decoded with
# orjson by the agent.
SETTINGS: dict[str, Any] = {
    "processing_guarantee": "at_least_once",
    "broker_commit_interval": 2.8,
    "broker_commit_every": 10_000,
    "store": "memory://",
    "consumer_auto_offset_reset": "earliest",
    "value_serializer": "raw",
}


class Run:
    """The measurement: from the first record processed to the commit of the last one."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.processed = 0  # records fully processed (acked by the stream)
        self.transitions = 0
        self.started: float | None = None
        self.cpu_started = 0.0
        self.last_record: float | None = None
        self.committed: float | None = None
        self.cpu_committed = 0.0
        self.partitions = 0
        self.replicas = 1


def topic_layout(bootstrap: str, topic: str, loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
    """(partitions, replication factor) of ``topic``. The table's changelog must have as many
    partitions as the topic it is keyed by (Faust checks it), and the output topic gets the
    same layout, as quix_window.py gives its own."""

    async def describe() -> tuple[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (meta,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        if meta["error_code"] or not meta["partitions"]:
            sys.exit(f"topic {topic} not found (error {meta['error_code']})")
        return len(meta["partitions"]), len(meta["partitions"][0]["replicas"])

    return loop.run_until_complete(describe())


def build(args: argparse.Namespace, run: Run) -> Any:
    """The application: topic -> agent (table read, rules, table write, 0..n transitions
    sent) -> out topic. Returns the Faust app."""
    app = faust.App(
        args.group,  # the app id is the consumer group, and prefixes the changelog topic
        broker=f"kafka://{args.bootstrap}",
        datadir=str(args.state_dir),
        topic_partitions=run.partitions,
        topic_replication_factor=run.replicas,
        web_enabled=False,  # no HTTP server: nothing reads it, and runs must not share a port
        **SETTINGS,
    )
    source = app.topic(args.topic, key_type=bytes, key_serializer="raw")
    sink = app.topic(
        args.out_topic or f"{args.topic}.faust-out",
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=run.partitions,
        replicas=run.replicas,
    )
    conversations = app.Table(
        "conversations",
        default=None,
        partitions=run.partitions,
        key_type=bytes,  # keys as they are (raw); values in faust's json codec (orjson)
    )

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def rules(stream: AsyncIterable[Any]) -> None:
        """The stateful step: the conversation's entry is read once per event, and written
        back (one changelog record) unless the event is a duplicate."""
        await sink.maybe_declare()  # before the first record: not timed
        async for key, value in stream.items():  # type: ignore[attr-defined]
            if run.started is None:
                run.started = time.perf_counter()
                run.cpu_started = time.process_time()
            event = orjson.loads(value)
            conv = conversations.get(key) or new_conversation()
            before = len(conv["ids"])
            out = apply_event(event, conv)
            if len(conv["ids"]) != before:
                conversations[key] = conv
            for item in out:
                await sink.send(key=key, value=orjson.dumps(item))
            run.transitions += len(out)

    return app


class Finish(faust.Sensor):  # type: ignore[misc]
    """Counts the records the stream has finished with (acked: every agent is done with
    them), like Quix's ``on_message_processed``. At the last one it commits (the consumer
    first flushes the producer, so transitions and changelog records are acknowledged, then
    commits the offsets), notes the time and stops the worker."""

    def __init__(self, topic: str, run: Run) -> None:
        super().__init__()
        self.topic = topic
        self.run = run
        self.app: Any = None
        self.worker: Any = None
        self.task: asyncio.Future[None] | None = None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        if tp.topic != self.topic:
            return
        run = self.run
        run.processed += 1
        if run.processed == run.count:
            run.last_record = time.perf_counter()
            self.task = asyncio.ensure_future(self.finish())

    async def finish(self) -> None:
        consumer = self.app.consumer
        # A periodic commit may be under way (then commit() waits for it and returns): the
        # second call commits whatever that one did not hold.
        await consumer.commit()
        await consumer.commit()
        self.run.committed = time.perf_counter()
        self.run.cpu_committed = time.process_time()
        await self.worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap HOST:PORT")
    parser.add_argument("--topic", required=True, help="the webhook-events topic to consume")
    parser.add_argument("--count", type=int, required=True, help="records to process")
    parser.add_argument("--group", required=True, help="the consumer group (use a fresh one)")
    parser.add_argument("--state-dir", type=Path, required=True, help="Faust data directory")
    parser.add_argument("--out-topic", help="transitions topic (default: <topic>.faust-out)")
    args = parser.parse_args()
    run = Run(args.count)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    run.partitions, run.replicas = topic_layout(args.bootstrap, args.topic, loop)
    app = build(args, run)
    finish = Finish(args.topic, run)
    app.sensors.add(finish)
    worker = faust.Worker(app, loop=loop, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    # No terminal spinner. At WARNING and above, Faust's worker spins it on every log record
    # and lowers the root logger to DEBUG for that, so that aiokafka and Faust build about
    # three DEBUG records per event that nobody prints. A worker run at INFO or below (as
    # `faust worker -l info` usually is) has no spinner either.
    worker.spinner = None
    finish.app, finish.worker = app, worker
    conf = app.conf  # read before the worker closes its loop
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    if run.processed < args.count or run.started is None or run.committed is None:
        sys.exit(f"stopped after {run.processed} of {args.count} records")
    settings = {
        "processing_guarantee": str(conf.processing_guarantee.value),
        "broker_commit_interval": conf.broker_commit_interval,
        "broker_commit_every": conf.broker_commit_every,
        "store": f"{conf.store.scheme}://",
        "consumer_auto_offset_reset": conf.consumer_auto_offset_reset,
        "value_serializer": conf.value_serializer,
        "stream_buffer_maxsize": conf.stream_buffer_maxsize,
        "broker_max_poll_records": conf.broker_max_poll_records,
        "producer_acks": conf.producer_acks,
        "producer_linger": conf.producer_linger,
        "table_standby_replicas": conf.table_standby_replicas,
        "web_enabled": conf.web_enabled,
        "cython_stream_iterator": faust.streams._CStreamIterator is not None,
        "input_partitions": run.partitions,
    }
    report(
        run,
        ("last_commit_ms", run.committed - (run.last_record or 0)),
        {"faust_streaming": version("faust-streaming"), "aiokafka": version("aiokafka")},
        settings,
    )


if __name__ == "__main__":
    main()
