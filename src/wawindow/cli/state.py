"""Commands that show the tracker's state: a user's windows, and the window events stream."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer

from wawindow.cli.output import out, settings_from, with_redis
from wawindow.engine.store import (
    EngineConfig,
    WindowStore,
)
from wawindow.engine.views import window_view
from wawindow.kafka import KafkaConnection
from wawindow.keys import Topics


def cmd_window(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    view = with_redis(
        settings,
        lambda redis: window_view(
            WindowStore(redis, EngineConfig()), args.phone_number_id, args.user, int(time.time())
        ),
    )
    if view is None:
        print(f"wawindow: no state for {args.user} on {args.phone_number_id}", file=sys.stderr)  # noqa: T201
        return 1
    out(json.dumps(view, indent=2, ensure_ascii=False))
    return 0


def cmd_events(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    topic = Topics(settings.topic_prefix).window_events
    # Ctrl-C ends --follow; main() turns it into exit status 130
    asyncio.run(_print_events(settings.kafka, topic, args.follow, args.from_beginning))
    return 0


async def _print_events(
    kafka: KafkaConnection, topic: str, follow: bool, from_beginning: bool
) -> None:
    """Print each event as one JSON line; without --follow, stop at the end of the topic."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning or not follow else "latest",
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        end = await consumer.end_offsets(list(consumer.assignment()))
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    out(record.value.decode())
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in end}
                if all(positions[tp] >= offset for tp, offset in end.items()):
                    return
    finally:
        await consumer.stop()
