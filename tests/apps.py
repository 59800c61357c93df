"""The apps the tests serve: the receiver's and the API's, built as ``wawindow run`` builds
them (:func:`wawindow.service.app.build_app`), each alone. Test code: not in the wheel."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from wawindow.config import Settings
from wawindow.engine.store import WindowStore
from wawindow.kafka.publisher import PUBLISHER, Publisher
from wawindow.metrics import Metrics
from wawindow.service.app import build_app


def create_app(
    settings: Settings, publisher: Publisher | None = None, metrics: Metrics | None = None
) -> web.Application:
    """The receiver's app. Without ``publisher`` it makes one from the settings, started
    and stopped with the app."""
    settings.require("kafka_bootstrap")
    owned = publisher is None
    publisher = publisher or Publisher(settings.kafka, ack_timeout_ms=settings.kafka_ack_timeout_ms)
    app = build_app(settings, {"webhook"}, publisher=publisher, metrics=metrics)
    if owned:
        app.cleanup_ctx.append(_publisher_ctx)
    return app


async def _publisher_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[PUBLISHER].start()
    yield
    await app[PUBLISHER].stop()


def create_api_app(
    settings: Settings,
    store: WindowStore,
    metrics: Metrics | None = None,
    publisher: Publisher | None = None,
) -> web.Application:
    """The API's app. Without a started ``publisher`` consent writes answer 503, as with
    Kafka down."""
    publisher = publisher or Publisher(
        settings.kafka_bootstrap or "", ack_timeout_ms=settings.kafka_ack_timeout_ms
    )
    return build_app(settings, {"api"}, publisher=publisher, store=store, metrics=metrics)
