"""Putting records on Kafka and knowing when they are safe.

One idempotent producer (``acks=all``) per process. :meth:`Publisher.publish` returns only
when Kafka has acknowledged every record it was given, or raises
:class:`~wawindow.errors.KafkaUnavailable` once the bound has passed, so a caller can answer
Meta ``200`` or ``503`` honestly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from wawindow.errors import KafkaUnavailable


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Publisher:
    """An aiokafka producer with all-or-nothing, time-bounded acknowledgement."""

    def __init__(self, bootstrap: str, *, ack_timeout_ms: int, client_id: str = "wawindow") -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._ack_timeout_ms = ack_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect; raises KafkaUnavailable when no broker answers."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=1,
            # A request must be able to fail before the HTTP bound does, so Kafka's own
            # errors surface instead of a bare timeout.
            request_timeout_ms=max(1_000, self._ack_timeout_ms),
            retry_backoff_ms=100,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise KafkaUnavailable(f"cannot reach Kafka at {self._bootstrap}: {exc}") from exc
        self._producer = producer

    async def stop(self) -> None:
        """Flush what is pending and disconnect; safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(self, records: Sequence[Record]) -> None:
        """Send ``records`` and wait until Kafka has acknowledged all of them.

        Records with the same key keep their order (one partition, idempotent producer).
        """
        producer = self._running()
        try:
            async with asyncio.timeout(self._ack_timeout_ms / 1000):
                futures = [
                    await producer.send(
                        r.topic, r.value, key=r.key, headers=list(r.headers) or None
                    )
                    for r in records
                ]
                await asyncio.gather(*futures)
        except TimeoutError:
            raise KafkaUnavailable(
                f"Kafka did not acknowledge {len(records)} record(s) in {self._ack_timeout_ms} ms"
            ) from None
        except KafkaError as exc:
            raise KafkaUnavailable(f"Kafka refused the records: {exc}") from exc

    def _running(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaUnavailable("the publisher is not started")
        return self._producer

    async def ready(self, timeout_s: float = 2.0) -> bool:
        """True when a broker answers a metadata request within ``timeout_s``."""
        client: Any = self._running().client
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            return False
