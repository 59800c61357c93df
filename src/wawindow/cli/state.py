"""Commands that show the tracker's state: a user's windows, and the window events stream."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from wawindow.cli.output import err, out, settings_from, with_redis
from wawindow.engine.store import (
    EngineConfig,
    WindowStore,
)
from wawindow.engine.views import window_view
from wawindow.errors import KafkaUnavailable, WawindowError
from wawindow.kafka.connection import KafkaConnection, diagnose
from wawindow.keys import Topics


def cmd_window(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    view = with_redis(
        settings,
        lambda redis: window_view(
            WindowStore(redis, EngineConfig.from_settings(settings)),
            args.phone_number_id,
            args.user,
            int(time.time()),
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


# --follow, with Kafka gone: try again after 1, 2, 4 … seconds, at most this long apart
FOLLOW_RETRY_MAX_S = 30.0
# with no record for this long, ask Kafka whether it still answers
QUIET_CHECK_S = 5.0
# how long Kafka may take to answer such a question (or the one for the topic's metadata)
ANSWER_S = 15.0


def retry_delay(attempt: int) -> float:
    """Seconds before ``--follow`` tries Kafka again after failed attempt ``attempt`` (1, 2 …)."""
    return min(FOLLOW_RETRY_MAX_S, 2.0 ** min(attempt - 1, 16))


async def _print_events(
    kafka: KafkaConnection, topic: str, follow: bool, from_beginning: bool
) -> None:
    """Print each event as one JSON line; without --follow, stop at the end of the topic (and
    stop with one line when Kafka cannot be reached). With --follow, Kafka gone is one line per
    attempt to reach it again, with a growing delay; printing resumes where it stopped."""
    positions: dict[TopicPartition, int] = {}
    attempt = 0

    def connected() -> None:
        nonlocal attempt
        if attempt:
            err(f"wawindow: reached Kafka at {kafka.bootstrap} again")
        attempt = 0

    while True:
        try:
            await _read_events(kafka, topic, follow, from_beginning, positions, connected)
            return
        except KafkaUnavailable as exc:
            if not follow:
                raise
            attempt += 1
            delay = retry_delay(attempt)
            err(f"wawindow: {exc}; attempt {attempt}, trying again in {delay:g} s")
            await asyncio.sleep(delay)


async def _read_events(
    kafka: KafkaConnection,
    topic: str,
    follow: bool,
    from_beginning: bool,
    positions: dict[TopicPartition, int],
    connected: Callable[[], None],
) -> None:
    # the topic first: a consumer of a topic that is not there waits 40 s for it, then says
    # only that it is unknown
    await _check_topic(kafka, topic)
    options = {**kafka.options(), "group_id": None, "enable_auto_commit": False}
    reset = "earliest" if from_beginning or not follow else "latest"
    consumer = AIOKafkaConsumer(topic, **options, auto_offset_reset=reset)
    await _start(consumer, kafka)
    try:
        while not consumer.assignment():
            _print(await consumer.getmany(timeout_ms=100), positions)
        assigned = list(consumer.assignment())
        for tp in assigned:
            if tp in positions:  # reading again after an outage: where it stopped
                consumer.seek(tp, positions[tp])
        end = await _end_offsets(consumer, kafka, assigned)
        connected()
        heard = time.monotonic()
        while True:
            if _print(await consumer.getmany(timeout_ms=500), positions):
                heard = time.monotonic()
            elif time.monotonic() - heard > QUIET_CHECK_S:  # quiet, or Kafka gone?
                await _end_offsets(consumer, kafka, assigned)
                heard = time.monotonic()
            if not follow:
                done = {tp: await consumer.position(tp) for tp in end}
                if all(done[tp] >= offset for tp, offset in end.items()):
                    return
    finally:
        await _stop(consumer)


def _print(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    positions: dict[TopicPartition, int],
) -> bool:
    """Print each record once (not again after an outage); True when the batch had any."""
    for tp, records in batch.items():
        for record in records:
            if record.offset >= positions.get(tp, 0):
                out(record.value.decode() if record.value is not None else "null")
                positions[tp] = record.offset + 1
    return bool(batch)


async def _start(consumer: AIOKafkaConsumer, kafka: KafkaConnection) -> None:
    try:
        await consumer.start()
    except KafkaError as exc:
        await _stop(consumer)
        why = await diagnose(kafka)
        raise KafkaUnavailable(f"cannot reach Kafka at {kafka.bootstrap}: {why}") from exc


async def _stop(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        # aiokafka's fetcher, stopped while a request waits to be retried (Kafka gone),
        # raises that request's cancellation; only a cancellation of this task goes on
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def _check_topic(kafka: KafkaConnection, topic: str) -> None:
    """Kafka answers, and has ``topic``: else one line saying which is not so."""
    admin = AIOKafkaAdminClient(**kafka.options(), request_timeout_ms=int(ANSWER_S * 1000))
    try:
        async with asyncio.timeout(ANSWER_S):
            await admin.start()
            [described] = await admin.describe_topics([topic])
    except (KafkaError, TimeoutError) as exc:
        why = await diagnose(kafka)
        raise KafkaUnavailable(f"cannot reach Kafka at {kafka.bootstrap}: {why}") from exc
    finally:
        await admin.close()
    if described["error_code"] != 0:
        raise WawindowError(
            f"Kafka at {kafka.bootstrap} has no topic {topic}; `wawindow topics create` makes"
            " it (check WAWINDOW_TOPIC_PREFIX)"
        )


async def _end_offsets(
    consumer: AIOKafkaConsumer, kafka: KafkaConnection, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The partitions' end offsets; KafkaUnavailable when Kafka does not answer in time."""
    try:
        async with asyncio.timeout(ANSWER_S):
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            return ends
    except (KafkaError, TimeoutError) as exc:
        why = await diagnose(kafka)
        raise KafkaUnavailable(f"cannot reach Kafka at {kafka.bootstrap}: {why}") from exc
