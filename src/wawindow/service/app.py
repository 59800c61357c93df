"""The HTTP app of a process, built in one place for any set of roles: production
(:func:`wawindow.service.roles.run_roles`) and the tests build it the same way.

Every role serves ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json``; the
``webhook`` role adds ``/webhook``, the ``api`` role ``/v1``. Every error is JSON
(:mod:`wawindow.answers`), ``404`` and ``405`` too. ``/readyz`` checks what the
roles need: Kafka for the receiver and the worker (the API alone serves without it), Redis
for the worker and the API, and the worker's sweeps.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from wawindow.answers import add_unrouted_route
from wawindow.api.app import add_api_routes
from wawindow.api.context import API, PEOPLE, STORE, TOPICS, ApiConfig
from wawindow.api.openapi import add_openapi_route
from wawindow.config import Settings
from wawindow.engine.people import People
from wawindow.engine.store import WindowStore
from wawindow.engine.suppression import SuppressionConfig, Suppressions
from wawindow.engine.worker import Worker
from wawindow.ingest.app import CONFIG, ReceiverConfig, add_routes
from wawindow.kafka.publisher import PUBLISHER, Publisher
from wawindow.keys import Topics
from wawindow.metrics import METRICS, Metrics, add_metrics_route
from wawindow.service.health import NEEDS_KAFKA, REDIS, WORKER, add_health_routes

ROLES = ("webhook", "worker", "api")


def needs_kafka(roles: Collection[str]) -> bool:
    """Whether the roles cannot work at all without Kafka (the API alone can)."""
    return "webhook" in roles or "worker" in roles


def build_app(
    settings: Settings,
    roles: Collection[str],
    *,
    publisher: Publisher,
    store: WindowStore | None = None,
    worker: Worker | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The app serving ``roles``; ``store`` is needed by the api and worker roles."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[PUBLISHER] = publisher
    app[NEEDS_KAFKA] = needs_kafka(roles)
    app[METRICS] = metrics or Metrics()
    add_health_routes(app)
    add_openapi_route(app)
    add_metrics_route(app)
    if "webhook" in roles:
        app[CONFIG] = ReceiverConfig.from_settings(settings)
        add_routes(app)
    if store is not None:
        app[REDIS] = store
    if "api" in roles:
        if store is None:
            raise ValueError("the api role needs the store")
        app[API] = ApiConfig.from_settings(settings)
        app[STORE] = store
        app[PEOPLE] = People(store, Suppressions(store, SuppressionConfig.from_settings(settings)))
        app[TOPICS] = Topics(settings.topic_prefix)
        add_api_routes(app)
    if worker is not None:
        app[WORKER] = worker
    add_unrouted_route(app)  # last: it answers what no route above takes
    return app
