"""Putting records on Kafka and knowing when they are safe.

One idempotent producer (``acks=all``) per process. :meth:`Publisher.publish` returns only
when Kafka has acknowledged every record it was given, or raises
:class:`~wawindow.errors.KafkaUnavailable` once the bound has passed, so a caller can answer
Meta ``200`` or ``503`` honestly.

Records of all requests that arrive in the same event-loop tick are coalesced into one batch
per partition and handed to aiokafka's ``send_batch``: one submission per partition instead of
one ``send`` per record, which is what makes the receiver cheap per webhook. Batches are
submitted by a single sender task in arrival order, so records with the same key keep their
order (same partition, idempotent producer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from wawindow.errors import KafkaUnavailable
from wawindow.kafka.connection import KafkaConnection, diagnose
from wawindow.kafka.topics import MAX_RECORD_BYTES

log = structlog.get_logger("wawindow.kafka.publisher")


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    value: bytes | None  # None: a tombstone (a compacted topic then forgets the key)
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    """Kafka's default partitioner hash (murmur2, as the Java client), cached per key:
    conversations repeat, and the pure-Python hash is not free."""
    return int(murmur2(key)) & 0x7FFFFFFF


# how much longer than the acknowledgement bound stopping the producer may take
STOP_GRACE_S = 2.0

_Waiters = list[tuple[Sequence[Record], "asyncio.Future[None]"]]
# one event-loop tick's waiters and the deadline that fails whoever of them still waits
_Tick = tuple[_Waiters, asyncio.TimerHandle]


class Publisher:
    """An aiokafka producer with all-or-nothing, time-bounded acknowledgement."""

    def __init__(
        self, kafka: str | KafkaConnection, *, ack_timeout_ms: int, client_id: str = "wawindow"
    ) -> None:
        self._kafka = KafkaConnection.of(kafka)
        self._bootstrap = self._kafka.bootstrap
        self._client_id = client_id
        self._ack_timeout_ms = ack_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._pending: _Waiters = []
        self._queue: asyncio.Queue[_Tick] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._round_robin = itertools.count()

    async def start(self) -> None:
        """Connect; raises KafkaUnavailable when no broker answers."""
        producer = AIOKafkaProducer(
            **self._kafka.options(),
            client_id=self._client_id,
            compression_type=self._kafka.producer_compression,
            acks="all",
            enable_idempotence=True,
            # No linger: batches already form on their own, from our per-tick coalescing and
            # while aiokafka's one request per broker is in flight. A linger only adds latency
            # (p99 at half load 92 ms with 1 ms of linger, 16 ms without; see docs/performance.md).
            linger_ms=0,
            # A request must be able to fail before the HTTP bound does, so Kafka's own
            # errors surface instead of a bare timeout.
            request_timeout_ms=max(1_000, self._ack_timeout_ms),
            retry_backoff_ms=100,
            # a whole signed body on dead-letter (see topics.MAX_RECORD_BYTES), with headers
            max_request_size=MAX_RECORD_BYTES + 1024 * 1024,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            why = await diagnose(self._kafka)
            raise KafkaUnavailable(f"cannot reach Kafka at {self._bootstrap}: {why}") from exc
        self._producer = producer
        self._sender = asyncio.create_task(self._send_loop(), name="wawindow-publisher")

    async def keep_starting(self, retry_s: float = 2.0) -> None:
        """Start, trying again until Kafka answers: for a role that serves without Kafka
        (the API) and only needs it for some routes, which answer 503 meanwhile."""
        while self._producer is None:
            try:
                await self.start()
            except KafkaUnavailable as exc:
                log.warning("publisher.waiting_for_kafka", error=str(exc), retry_in_s=retry_s)
                await asyncio.sleep(retry_s)
        log.info("publisher.started")

    async def stop(self) -> None:
        """Flush what is pending and disconnect; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._pending:
            self._flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._ack_timeout_ms / 1000):
                await self._queue.join()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        try:  # with Kafka gone, aiokafka would wait for it to flush forever
            async with asyncio.timeout(self._ack_timeout_ms / 1000 + STOP_GRACE_S):
                await producer.stop()
        except TimeoutError:
            log.warning("publisher.stop_timeout", waited_s=self._ack_timeout_ms / 1000)

    async def publish(self, records: Sequence[Record]) -> None:
        """Send ``records`` and wait until Kafka has acknowledged all of them."""
        if not records:
            return
        self._running()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((records, waiter))
        try:
            await waiter  # resolved by the sender, or failed by the tick's deadline (_expire)
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka refused the records: {exc}") from exc

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            # one deadline for the whole tick, instead of a timeout context per request
            deadline = asyncio.get_running_loop().call_later(
                self._ack_timeout_ms / 1000, _expire, pending, self._ack_timeout_ms
            )
            self._queue.put_nowait((pending, deadline))

    async def _send_loop(self) -> None:
        """Submit each tick's records in order; resolve the waiters when Kafka acknowledges."""
        while True:
            ticks = [await self._queue.get()]
            # Everything that queued up while the last submission waited goes out together,
            # so batches grow with the load instead of queueing one tick at a time.
            while not self._queue.empty():
                ticks.append(self._queue.get_nowait())
            waiters = [w for tick, _ in ticks for w in tick]
            deadlines = [deadline for _, deadline in ticks]
            try:
                futures = await self._submit([r for records, _ in waiters for r in records])
            except KafkaError as exc:
                _resolve(waiters, deadlines, exc)
            except Exception as exc:  # the sender must outlive any one failure
                log.exception("publisher.submit_failed")
                _resolve(waiters, deadlines, KafkaError(str(exc)))
            else:
                acked = asyncio.gather(*futures)
                acked.add_done_callback(functools.partial(_on_acked, waiters, deadlines))
            finally:
                for _ in ticks:
                    self._queue.task_done()

    async def _submit(self, records: list[Record]) -> list[asyncio.Future[Any]]:
        producer = self._running()
        groups: dict[tuple[str, int], list[Record]] = {}
        partitions: dict[str, list[int]] = {}  # each topic's, looked up once per submission
        for record in records:
            ordered = partitions.get(record.topic)
            if ordered is None:
                ordered = partitions[record.topic] = await self._partitions(record.topic)
            if record.key is None:
                partition = ordered[next(self._round_robin) % len(ordered)]
            else:
                partition = ordered[_key_hash(record.key) % len(ordered)]
            groups.setdefault((record.topic, partition), []).append(record)
        futures = []
        for (topic, partition), group in groups.items():
            batch = producer.create_batch()
            for record in group:
                headers = list(record.headers)
                if (
                    batch.append(
                        key=record.key, value=record.value, timestamp=None, headers=headers
                    )
                    is None
                ):
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if (
                        batch.append(
                            key=record.key, value=record.value, timestamp=None, headers=headers
                        )
                        is None
                    ):
                        raise KafkaError(
                            f"a record of {len(record.value or b'')} bytes does not fit in a batch"
                        )
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def _partitions(self, topic: str) -> list[int]:
        producer = self._running()
        partitions = producer.client.cluster.partitions_for_topic(topic)
        if not partitions:
            partitions = await producer.partitions_for(topic)
        return sorted(partitions)

    def _running(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaUnavailable("the publisher is not started")
        return self._producer

    async def ready(self, timeout_s: float = 2.0) -> bool:
        """True when a broker answers a metadata request within ``timeout_s``."""
        if self._producer is None:
            return False
        client: Any = self._producer.client
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            return False


def _on_acked(
    waiters: _Waiters, deadlines: list[asyncio.TimerHandle], acked: asyncio.Future[Any]
) -> None:
    if acked.cancelled():
        _resolve(waiters, deadlines, KafkaError("cancelled"))
        return
    exc = acked.exception()
    if exc is not None and not isinstance(exc, KafkaError):
        exc = KafkaError(str(exc))
    _resolve(waiters, deadlines, exc)


def _expire(waiters: _Waiters, timeout_ms: int) -> None:
    """The bound has passed: whoever still waits is told Kafka did not acknowledge in time."""
    for records, waiter in waiters:
        if not waiter.done():
            waiter.set_exception(
                KafkaUnavailable(
                    f"Kafka did not acknowledge {len(records)} record(s) in {timeout_ms} ms"
                )
            )
            waiter.exception()  # marked as retrieved: the request answers from it


def _resolve(
    waiters: _Waiters, deadlines: list[asyncio.TimerHandle], exc: BaseException | None
) -> None:
    for deadline in deadlines:  # answered: the deadlines (and the records they hold) go
        deadline.cancel()
    for _, waiter in waiters:
        if waiter.done():
            continue
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
            waiter.exception()  # a request that already answered 503 no longer awaits it


#: the publisher an HTTP app's handlers put records with (the receiver's, the API's)
PUBLISHER = web.AppKey("publisher", Publisher)
