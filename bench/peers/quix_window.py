"""A peer of wawindow's worker, written as a Quix Streams application: the core service
window rules over the same ``webhook-events`` records, keyed by conversation, with the
conversation's state in Quix's RocksDB state store.

Per conversation (one Kafka record key), in one state entry:

- an inbound ``message`` opens the 24-hour window (``opened``) if none is open at its time,
  or extends it (``extended``) when it is later than the last inbound message; an older one
  moves nothing;
- an event at or after the end of the open window closes it first (``closed``, lazily: Quix
  has no timers, so a window closes only when its conversation's next event arrives);
- inbound messages and ``delivered`` statuses are counted;
- an ``event_id`` already applied to the conversation is ignored (no transition, no count).

Each transition is produced to the output topic as JSON, keyed by the conversation.

Run it under a Python with quixstreams installed (see requirements.txt); it does not use the
wawindow package. It consumes ``--topic`` from the earliest offset in its own consumer group,
stops once it has processed ``--count`` records and prints one JSON line with its rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from quixstreams import Application  # type: ignore[import-not-found]
from quixstreams.models import TopicConfig  # type: ignore[import-not-found]

# the peers' shared rules (bench/peers/window_rules.py), found from this script's bench/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from peers.window_rules import apply_event, new_conversation, report

STATE_KEY = "conversation"

# Quix's documented defaults for a stateful application, written out so that the report
# says what was measured: at-least-once processing, a checkpoint every 5 s (offsets,
# changelog and RocksDB flushed together), changelog topics backing the RocksDB store.
SETTINGS: dict[str, Any] = {
    "processing_guarantee": "at-least-once",
    "commit_interval": 5.0,
    "commit_every": 0,
    "use_changelog_topics": True,
    "auto_offset_reset": "earliest",
}


class Run:
    """The measurement: from the first record processed to the last one's checkpoint."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.processed = 0
        self.transitions = 0
        self.started: float | None = None
        self.cpu_started = 0.0
        self.last_record: float | None = None
        self.committed: float | None = None
        self.cpu_committed = 0.0
        self.partitions = 0

    def rules(self, event: dict[str, Any], state: Any) -> list[dict[str, Any]]:
        """The stateful step: the conversation's state is read once per event, and written
        back unless the event is a duplicate."""
        if self.started is None:
            self.started = time.perf_counter()
            self.cpu_started = time.process_time()
        conv = state.get(STATE_KEY) or new_conversation()
        before = len(conv["ids"])
        out = apply_event(event, conv)
        if len(conv["ids"]) != before:
            state.set(STATE_KEY, conv)
        self.transitions += len(out)
        return out


def build(args: argparse.Namespace, run: Run) -> Any:
    """The application: topic -> stateful rules (0..n transitions per record) -> out topic."""

    def processed(topic: str, partition: int, offset: int) -> None:
        run.processed += 1
        if run.processed >= run.count:
            run.last_record = time.perf_counter()
            app.stop()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        state_dir=str(args.state_dir),
        on_message_processed=processed,
        loglevel="WARNING",
        **SETTINGS,
    )
    source = app.topic(args.topic, value_deserializer="json", key_deserializer="bytes")
    run.partitions = source.broker_config.num_partitions
    replicas = source.broker_config.replication_factor
    sink = app.topic(
        args.out_topic or f"{args.topic}.peer-out",
        key_serializer="bytes",
        value_serializer="json",
        config=TopicConfig(num_partitions=run.partitions, replication_factor=replicas),
    )
    sdf = app.dataframe(source)
    sdf = sdf.apply(run.rules, stateful=True, expand=True)
    sdf.to_topic(sink)
    _time_final_commit(app, run)
    return app


def _time_final_commit(app: Any, run: Run) -> None:
    """Note when the checkpoint that holds the last record has been committed (its
    transitions and changelog acknowledged by Kafka, offsets committed, RocksDB written):
    the worker's figure includes committing its last batch too. Quix offers no public hook
    for this, so the application's checkpoint commit is wrapped."""
    context = app._processing_context
    commit = context.commit_checkpoint

    def timed(*args: Any, **kwargs: Any) -> None:
        commit(*args, **kwargs)
        if run.last_record is not None:
            run.committed = time.perf_counter()
            run.cpu_committed = time.process_time()

    context.commit_checkpoint = timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap HOST:PORT")
    parser.add_argument("--topic", required=True, help="the webhook-events topic to consume")
    parser.add_argument("--count", type=int, required=True, help="records to process")
    parser.add_argument("--group", required=True, help="the consumer group (use a fresh one)")
    parser.add_argument("--state-dir", type=Path, required=True, help="RocksDB state directory")
    parser.add_argument("--out-topic", help="transitions topic (default: <topic>.peer-out)")
    args = parser.parse_args()
    run = Run(args.count)
    app = build(args, run)
    app.run()
    if run.processed < args.count or run.started is None or run.committed is None:
        sys.exit(f"stopped after {run.processed} of {args.count} records")
    config = app.config
    settings = {
        **{name: getattr(config, name) for name in SETTINGS},
        "state_store": "rocksdb",
        "consumer_poll_timeout": config.consumer_poll_timeout,
        "producer_extra_config": config.producer_extra_config,
        "consumer_extra_config": config.consumer_extra_config,
        "input_partitions": run.partitions,
    }
    report(
        run,
        ("last_checkpoint_ms", run.committed - (run.last_record or 0)),
        {"quixstreams": version("quixstreams")},
        settings,
    )


if __name__ == "__main__":
    main()
