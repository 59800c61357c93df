"""Every metric moves when its event happens: the real receiver, Kafka, worker and Redis."""

from __future__ import annotations

import asyncio
import io
import platform
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from tests.conftest import APP_SECRET, SUPPRESSION_KEY
from tests.engine_harness import HOUR, USER, Scenario
from wawindow.dev import samples
from wawindow.ingest.signature import HEADER, sign
from wawindow.kafka.consent_records import erasure_record
from wawindow.kafka.publisher import Publisher, Record
from wawindow.metrics import METRICS, Metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample's value; a histogram's ``_count`` for histograms; 0 when absent."""
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_every_metric_moves_when_its_event_happens(s: Scenario) -> None:
    web = s.receiver.app[METRICS]
    worker = await s.worker()
    wm = worker.metrics
    before = {
        "accepted": value(web, "wawindow_webhook_requests_total", outcome="accepted", status="200"),
    }

    # the receiver: accepted, bad signatures, too large, dead-lettered, and events by kind
    await s.inbound("wamid.1", s.now - 2 * HOUR)
    bad = await s.receiver.post("/webhook", data=b"{}", headers={HEADER: "sha256=" + "0" * 64})
    unsigned = await s.receiver.post("/webhook", data=b"{}")
    huge = await s.receiver.post(
        "/webhook", data=io.BytesIO(b" " * (s.settings.max_body_bytes + 1)),
        headers={HEADER: "sha256=" + "0" * 64},
    )  # fmt: skip
    garbage = b"not json at all"
    dead = await s.receiver.post(
        "/webhook", data=garbage, headers={HEADER: sign(garbage, APP_SECRET)}
    )
    assert (bad.status, unsigned.status, huge.status, dead.status) == (401, 401, 413, 200)

    assert value(web, "wawindow_webhook_requests_total", outcome="accepted", status="200") == (
        before["accepted"] + 1
    )
    assert value(web, "wawindow_webhook_requests_total", outcome="bad_signature", status="401") == 2
    assert value(web, "wawindow_webhook_requests_total", outcome="too_large", status="413") == 1
    assert value(web, "wawindow_webhook_requests_total", outcome="dead_lettered", status="200") == 1
    assert value(web, "wawindow_webhook_signature_failures_total", reason="mismatch") == 1
    assert value(web, "wawindow_webhook_signature_failures_total", reason="missing") == 1
    assert value(web, "wawindow_webhook_body_bytes_count") == 4  # all but the one too large
    assert value(web, "wawindow_webhook_ack_seconds_count") == 5
    assert value(web, "wawindow_kafka_produce_seconds_count") == 2
    assert value(web, "wawindow_webhook_events_total", kind="message") == 1
    assert value(web, "wawindow_dead_letters_total", source="webhook") == 1

    # the worker's lag before it consumed anything, then its batches
    await worker.run_once(100)  # joins the group and may take a first batch
    await worker.observe()
    lag_before = sum(
        value(wm, "wawindow_worker_consumer_lag", topic="webhook-events", partition=str(p))
        for p in range(3)
    )
    await s.status("wamid.o1", "read", s.now - HOUR)  # read before delivered: out of order
    await s.status("wamid.o1", "delivered", s.now - HOUR - 1)
    await s.inbound("wamid.1", s.now - 2 * HOUR)  # Meta's re-send: a duplicate
    await s.status("wamid.o2", "failed", s.now - 60, error_code=131047)
    await worker.observe()
    lag_posted = sum(
        value(wm, "wawindow_worker_consumer_lag", topic="webhook-events", partition=str(p))
        for p in range(3)
    )
    poison = AIOKafkaProducer(bootstrap_servers=s.settings.kafka_bootstrap)
    await poison.start()
    try:
        await poison.send_and_wait(s.topics.webhook_events, b"{broken", key=b"x")
    finally:
        await poison.stop()
    await s.process()
    await worker.observe()

    assert lag_posted > lag_before
    assert (
        sum(
            value(wm, "wawindow_worker_consumer_lag", topic="webhook-events", partition=str(p))
            for p in range(3)
        )
        == 0
    )
    assert value(wm, "wawindow_worker_records_total") >= 6
    assert value(wm, "wawindow_worker_batch_records_count") >= 1
    assert value(wm, "wawindow_worker_batch_seconds_count") >= 1
    assert value(wm, "wawindow_redis_seconds_count", operation="apply") >= 1
    assert value(wm, "wawindow_duplicates_dropped_total") == 1
    assert value(wm, "wawindow_out_of_order_corrections_total") == 1
    assert value(wm, "wawindow_csw_corrections_total") == 1
    assert value(wm, "wawindow_dead_letters_total", source="worker") == 1
    assert value(wm, "wawindow_window_events_total", type="wawindow.service_window.opened") == 1
    assert value(wm, "wawindow_window_events_total", type="wawindow.service_window.closed") == 1
    assert value(wm, "wawindow_redis_used_memory_bytes") > 0
    assert value(wm, "wawindow_windows_open") >= 1  # the user's derived conversation

    # closes published by the sweeper, with their lateness
    # (a window learned after its end is closed by the worker itself, so this one ends later)
    await s.inbound("wamid.2", s.now - 24 * HOUR + 2 * HOUR, user="16505550002")
    await s.process()
    assert value(wm, "wawindow_close_lateness_seconds_count") == 0
    await s.sweep(s.now + 2 * HOUR)
    assert value(wm, "wawindow_close_lateness_seconds_count") >= 1

    # Meta's conversation id disagreeing with the tracker's derivation (CBP era)
    cbp = {"billable": True, "pricing_model": "CBP", "category": "marketing"}
    for n, at in ((1, s.now - 3 * HOUR), (2, s.now - 2 * HOUR)):
        conversation = {"id": f"conv{n}", "origin": {"type": "marketing"},
                        "expiration_timestamp": str(at + 24 * HOUR)}  # fmt: skip
        await s.status(f"wamid.c{n}", "delivered", at, wa_id="16505550003", pricing=cbp,
                       conversation=conversation)  # fmt: skip
    await s.process()
    assert value(wm, "wawindow_conversation_disagreements_total") == 1


async def test_an_erased_persons_older_event_counts_as_erased_not_as_a_duplicate(
    s: Scenario, publisher: Publisher
) -> None:
    await s.inbound("wamid.1", s.now - 2 * HOUR)
    erasure = erasure_record(samples.WABA_ID, USER, s.now - HOUR, "metrics-test")
    await publisher.publish(
        [Record(s.topics.consent_events, orjson.dumps(erasure), erasure["event_id"].encode())]
    )
    await s.process()
    wm = s.workers[0].metrics
    await s.inbound("wamid.late", s.now - 3 * HOUR)  # older than the erasure: dropped
    await s.process()

    assert value(wm, "wawindow_worker_events_erased_total") == 1
    assert value(wm, "wawindow_duplicates_dropped_total") == 0


def test_every_metric_family_is_named_wawindow_and_has_bounded_labels() -> None:
    """Ours are ``wawindow_*`` with labels of few values (never a user or a number); the
    rest are the client library's standard process, GC and platform collectors."""
    allowed = {
        "outcome", "status", "reason", "kind", "source", "partition", "operation", "type", "route",
        "topic",
    }  # fmt: skip
    standard = ("process_", "python_gc_", "python_info")
    for family in Metrics().registry.collect():
        if family.name.startswith(standard):
            continue
        assert family.name.startswith("wawindow_")
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= allowed


async def test_api_answers_are_counted_by_route_template_and_status(s: Scenario) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from tests.apps import create_api_app
    from wawindow.config import Settings

    settings = Settings.from_env(
        {
            "WAWINDOW_API_TOKENS": "metrics-token",
            "WAWINDOW_API_WRITE_TOKENS": "metrics-writer",
            "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
        }
    )
    app = create_api_app(settings, s.store)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        auth = {"Authorization": "Bearer metrics-token"}
        unknown = await client.get(f"/v1/windows/{samples.PHONE_NUMBER_ID}/1999", headers=auth)
        refused = await client.get(f"/v1/windows/{samples.PHONE_NUMBER_ID}/1999")
        nowhere = await client.get("/v1/nowhere/1999", headers=auth)
        not_gzip = await client.post(
            "/v1/consents",
            data=b"{}",
            headers={"Authorization": "Bearer metrics-writer", "Content-Encoding": "gzip"},
        )
    finally:
        await client.close()
    m = app[METRICS]
    route = "/v1/windows/{phone_number_id}/{user}"

    assert (unknown.status, refused.status, nowhere.status, not_gzip.status) == (404, 401, 404, 400)
    assert value(m, "wawindow_api_requests_total", route="unmatched", status="404") == 1
    assert value(m, "wawindow_api_requests_total", route="/v1/consents", status="400") == 1
    assert value(m, "wawindow_api_requests_total", route=route, status="404") == 1
    assert value(m, "wawindow_api_requests_total", route=route, status="401") == 1
    assert value(m, "wawindow_api_seconds_count", route=route) == 2
    labels = {v for f in m.registry.collect() for x in f.samples for v in x.labels.values()}
    assert not any("1999" in v for v in labels)  # never a user in a label


async def test_a_full_redis_makes_the_worker_retry_and_lose_nothing(s: Scenario) -> None:
    """At maxmemory (noeviction) Redis refuses the engine's writes: the batch is rewound and
    counted as a retry, and applied once Redis has room again."""
    worker = await s.worker()
    await s.inbound("wamid.full", s.now - 60)
    await s.redis.config_set("maxmemory", "1")
    try:
        async with asyncio.timeout(30):
            while worker.metrics.registry.get_sample_value(
                "wawindow_worker_batch_retries_total"
            ) in (None, 0.0):
                await worker.run_once(200)
        await worker.observe()
        limit = worker.metrics.registry.get_sample_value("wawindow_redis_maxmemory_bytes")
    finally:
        await s.redis.config_set("maxmemory", "0")
    await s.process()

    assert limit == 1
    assert await s.event_types() == ["service_window.opened"]
    assert (await s.counts())["inbound_messages"] == 1


def test_process_and_gc_metrics_are_registered() -> None:
    m = Metrics()
    assert (m.registry.get_sample_value("process_cpu_seconds_total") or 0) > 0
    assert m.registry.get_sample_value("python_gc_objects_collected_total", {"generation": "0"})
    major, minor, patch = platform.python_version_tuple()
    labels = {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patch,
        "version": platform.python_version(),
    }
    assert m.registry.get_sample_value("python_info", labels) == 1
