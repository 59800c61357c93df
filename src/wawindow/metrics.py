"""Prometheus metrics, served at ``GET /metrics`` by every role.

One :class:`Metrics` per process, holding its own registry (tests and benchmarks make as many
as they like). Labels are bounded: outcomes, event kinds, window event types, partitions;
never users, numbers or message ids.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from wawindow.keys import SHARDS

# shards whose open windows each refresh of wawindow_windows_open counts anew (the worker's
# observation, every 5 s: all of them every 80 s)
OPEN_COUNT_SHARDS = 16

T = TypeVar("T", bound=MetricWrapperBase)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BYTES_BUCKETS = (512, 2048, 8192, 32768, 131072, 524288, 1048576, 3145728)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000)
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        # what operators expect of any process: CPU, memory, file descriptors, GC, Python
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        # the receiver
        self.webhook_requests = Counter(
            "wawindow_webhook_requests",
            "POST /webhook answers by outcome (accepted, partial, dead_lettered, bad_signature,"
            " too_large, unsupported_encoding, unreadable_body, kafka_unavailable)",
            ["outcome", "status"],
            registry=r,
        )
        self.signature_failures = Counter(
            "wawindow_webhook_signature_failures",
            "POSTs refused for their X-Hub-Signature-256 (missing or mismatch)",
            ["reason"],
            registry=r,
        )
        self.body_bytes = Histogram(
            "wawindow_webhook_body_bytes", "size of POST bodies", buckets=BYTES_BUCKETS, registry=r
        )
        self.ack_seconds = Histogram(
            "wawindow_webhook_ack_seconds",
            "from reading a POST to answering it (Meta's target: median under 250 ms)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.produce_seconds = Histogram(
            "wawindow_kafka_produce_seconds",
            "until Kafka acknowledged a POST's records",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.webhook_events = Counter(
            "wawindow_webhook_events",
            "events split out of POSTs, by kind"
            " (message, status, user_preference, call, error, change)",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "wawindow_dead_letters",
            "records put on the dead-letter topic, by who put them there (webhook, worker)",
            ["source"],
            registry=r,
        )
        # the worker
        self.worker_records = Counter(
            "wawindow_worker_records", "webhook-events records handled and committed", registry=r
        )
        self.worker_batch_records = Histogram(
            "wawindow_worker_batch_records", "records per batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.worker_batch_seconds = Histogram(
            "wawindow_worker_batch_seconds",
            "handling one batch: Redis, publishing, committing",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.worker_retries = Counter(
            "wawindow_worker_batch_retries",
            "batches rewound after a Redis or Kafka failure",
            registry=r,
        )
        self.sweep_failures = Counter(
            "wawindow_sweep_failures",
            "sweeps (warning, closing, re-publishing) that failed and were retried",
            registry=r,
        )
        self.conversations_quarantined = Counter(
            "wawindow_conversations_quarantined",
            "conversations the sweeper could not close, dead-lettered and retried later",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "wawindow_worker_consumer_lag",
            "records on this worker's partitions not yet committed, per topic (without the"
            " prefix: webhook-events, consent-events) and partition",
            ["topic", "partition"],
            registry=r,
        )
        self.redis_seconds = Histogram(
            "wawindow_redis_seconds",
            "Redis round trips by operation (apply, resolve, link, due, close, acknowledge)",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.windows_open = Gauge(
            "wawindow_windows_open",
            "users with an open service window, entry point window or conversation (whole"
            " store; every worker reports about the same figure, so take max, not sum; each"
            f" refresh counts {OPEN_COUNT_SHARDS} of the {SHARDS} shards anew)",
            registry=r,
        )
        self.window_events = Counter(
            "wawindow_window_events", "window events published, by type", ["type"], registry=r
        )
        self.close_lateness = Histogram(
            "wawindow_close_lateness_seconds",
            "how long after its true end a window's or conversation's close was published",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.duplicates = Counter(
            "wawindow_duplicates_dropped", "events applied before (Meta's re-sends, replays)",
            registry=r,
        )  # fmt: skip
        self.events_erased = Counter(
            "wawindow_worker_events_erased",
            "events of an erased person of the time the erasure covers (late, replayed),"
            " dropped unapplied",
            registry=r,
        )
        self.out_of_order = Counter(
            "wawindow_out_of_order_corrections",
            "events older than what the state knew: statuses never downgraded, late messages"
            " that never shorten a window",
            registry=r,
        )
        self.csw_corrections = Counter(
            "wawindow_csw_corrections",
            "service windows closed early because Meta answered 131047",
            registry=r,
        )
        self.disagreements = Counter(
            "wawindow_conversation_disagreements",
            "deliveries where Meta's conversation id and the tracker's derivation disagreed",
            registry=r,
        )
        # the API
        self.api_requests = Counter(
            "wawindow_api_requests",
            "/v1 answers by route template and status",
            ["route", "status"],
            registry=r,
        )
        self.api_seconds = Histogram(
            "wawindow_api_seconds",
            "/v1 answer latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_used_memory = Gauge(
            "wawindow_redis_used_memory_bytes",
            "Redis used_memory (summed over a cluster's primaries)",
            registry=r,
        )
        self.redis_max_memory = Gauge(
            "wawindow_redis_maxmemory_bytes",
            "Redis maxmemory (0: no limit; summed over a cluster's primaries)",
            registry=r,
        )

    def child(self, metric: T, *labels: str) -> T:
        """``metric.labels(*labels)``, found once and then kept: a hot path (every request,
        every record) pays a dictionary lookup instead of prometheus-client's checks and lock."""
        found = self._children.get((metric, labels))
        if found is None:
            found = self._children[metric, labels] = metric.labels(*labels)
        return found

    def label_names(self) -> dict[str, set[str]]:
        """Each family's label names (histograms add ``le``), for checking alert rules."""
        out: dict[str, set[str]] = {}
        for value in vars(self).values():
            if isinstance(value, MetricWrapperBase):
                # prometheus-client keeps these on the metric; there is no public accessor
                name, labels = value._name, set(value._labelnames)
                out[name] = labels | {"le"} if isinstance(value, Histogram) else labels
        return out

    def names(self) -> set[str]:
        """Every sample name this registry can export (``_total``, ``_bucket`` … included)."""
        names = set()
        for family in self.registry.collect():
            names.add(family.name)
            for suffix in ("_total", "_created", "_bucket", "_count", "_sum"):
                names.add(family.name + suffix)
        return names

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


def add_metrics_route(app: web.Application) -> None:
    async def metrics(request: web.Request) -> web.Response:
        body = request.app[METRICS].render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
