"""Kafka stopped under the receiver: 503 and nothing acknowledged, then recovery.

This test owns a broker of its own, so stopping it does not disturb the others.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.apps import create_app
from tests.conftest import APP_SECRET, VERIFY_TOKEN, Client
from tests.kafkautil import read_all, values
from wawindow.config import Settings, cache_dir
from wawindow.dev import samples
from wawindow.devservices.broker import KafkaBroker, fetch_jars
from wawindow.ingest.signature import HEADER, sign
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics
from wawindow.metrics import METRICS

pytestmark = pytest.mark.kafka


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(fetch_jars(cache_dir()), tmp_path / "kafka", heap_mb=384)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def body_for(wamid: str) -> bytes:
    return samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message(wamid, 1)]))
    )


async def post(client: Client, raw: bytes) -> int:
    response = await client.post(
        "/webhook", data=io.BytesIO(raw), headers={HEADER: sign(raw, APP_SECRET)}
    )
    return response.status


async def test_kafka_down_gives_503_then_the_receiver_recovers(own_broker: KafkaBroker) -> None:
    settings = Settings.from_env(
        {
            "WAWINDOW_KAFKA_BOOTSTRAP": own_broker.bootstrap,
            "WAWINDOW_APP_SECRETS": APP_SECRET,
            "WAWINDOW_VERIFY_TOKEN": VERIFY_TOKEN,
            "WAWINDOW_TOPIC_PREFIX": "outage.",
            "WAWINDOW_KAFKA_ACK_TIMEOUT_MS": "1500",
        }
    )
    topics = Topics("outage.")
    await create_topics(own_broker.bootstrap, topics, partitions=3, replication_factor=1)
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        assert await post(client, body_for("wamid.before")) == 200

        own_broker.stop()
        started = time.monotonic()
        status = await post(client, body_for("wamid.during"))
        waited = time.monotonic() - started
        ready = await client.get("/readyz")

        assert status == 503
        unavailable = client.app[METRICS].registry.get_sample_value(
            "wawindow_webhook_requests_total", {"outcome": "kafka_unavailable", "status": "503"}
        )
        assert unavailable == 1
        assert waited < 10, "the 503 must come within the configured bound, not hang"
        assert ready.status == 503

        own_broker.start()
        # Meta retries until it gets a 200; do the same, a bounded number of times.
        for _ in range(200):
            if await post(client, body_for("wamid.after")) == 200:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the receiver did not recover after Kafka came back")
    finally:
        await client.close()

    wamids = [
        e["data"]["wamid"]
        for e in values(await read_all(own_broker.bootstrap, topics.webhook_events))
    ]
    assert "wamid.before" in wamids
    assert "wamid.after" in wamids
    # The 503 body may or may not have reached Kafka later (Meta re-sends it, and the worker
    # drops repeats by event id); what matters is that it was never acknowledged.
    assert set(wamids) <= {"wamid.before", "wamid.during", "wamid.after"}
