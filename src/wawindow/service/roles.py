"""Running roles (``webhook``, ``worker``) in one process, with one start-up and shutdown order.

Start-up: Kafka producer, then Redis and the worker's consumer (worker role), then HTTP.
Shutdown on SIGINT or SIGTERM, the reverse:

1. stop accepting HTTP requests; in-flight ones finish (aiohttp's shutdown timeout);
2. the worker finishes the batch in hand, commits it, and leaves the consumer group;
3. Redis is closed;
4. the producer flushes what is pending and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from wawindow import __version__, logs
from wawindow.config import Settings
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.suppression import SuppressionConfig
from wawindow.engine.worker import Worker
from wawindow.errors import ServiceStartError
from wawindow.finance.pricing import load_rules
from wawindow.finance.ratecard import load_rate_cards
from wawindow.kafka.publisher import Publisher
from wawindow.keys import Topics
from wawindow.metrics import Metrics
from wawindow.redis.connection import connect
from wawindow.service.app import build_app, needs_kafka

log = structlog.get_logger("wawindow")

# how long a stopping worker may take to finish its batch before it is cancelled (its batch
# is then delivered again, which changes nothing twice)
SHUTDOWN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Running:
    """What a ``ready`` callback may use once every role is up."""

    settings: Settings
    store: WindowStore | None
    worker: Worker | None


def required_settings(roles: Collection[str]) -> tuple[str, ...]:
    names = ["kafka_bootstrap"]
    if "webhook" in roles:
        names += ["app_secrets", "verify_token"]
    if "worker" in roles or "api" in roles:
        names += ["redis_url"]
    if "api" in roles:
        names += ["api_tokens"]
    if "worker" in roles or "api" in roles:  # they erase, and answer send-checks
        names += ["suppression_key"]
    return tuple(names)


def check_files(settings: Settings, roles: Collection[str]) -> None:
    """Read every file a setting names that ``roles`` use, before anything starts: one that is
    missing or malformed stops start-up with one line naming its setting, instead of
    halfway through with clients open."""
    kafka = settings.kafka_connection_unchecked()
    if settings.kafka_bootstrap:
        kafka.options()  # the TLS files, and the OAUTHBEARER token provider
    if settings.redis_url is not None and ("worker" in roles or "api" in roles):
        settings.redis_tls.check(settings.redis_url.value)
    if "api" in roles:
        load_rules(settings.pricing_rules_file)
        load_rate_cards(settings.rate_card_file)


async def run_roles(
    settings: Settings,
    roles: Collection[str],
    ready: Callable[[Running], Coroutine[Any, Any, None]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``roles`` until SIGINT/SIGTERM (or ``stop`` is set). ``ready`` runs beside them once
    they are up, and is cancelled at shutdown if it has not finished."""
    settings.require(*required_settings(roles))
    check_files(settings, roles)
    # every line of this process, the libraries' included, says which roles and release
    structlog.contextvars.bind_contextvars(role=",".join(sorted(roles)), version=__version__)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # until every role is up, what fails is said once, in the error that stops start-up
    starting = contextlib.ExitStack()
    starting.enter_context(logs.libraries_quiet())
    try:
        async with contextlib.AsyncExitStack() as stack:
            publisher = Publisher(settings.kafka, ack_timeout_ms=settings.kafka_ack_timeout_ms)
            stack.push_async_callback(publisher.stop)
            if needs_kafka(roles):
                await publisher.start()
            else:  # the API serves reads without Kafka; consent writes answer 503 meanwhile
                connecting = asyncio.create_task(publisher.keep_starting(), name="wawindow-kafka")
                stack.push_async_callback(_cancel, connecting)

            metrics = Metrics()
            worker: Worker | None = None
            store: WindowStore | None = None
            if "worker" in roles or "api" in roles:
                assert settings.redis_url is not None
                redis = await connect(
                    settings.redis_url.value, settings.redis_tls, settings.redis_sentinels
                )
                stack.push_async_callback(redis.aclose)
                store = WindowStore(redis, EngineConfig.from_settings(settings))
                await store.load()
            if "worker" in roles:
                assert store is not None
                worker = Worker(
                    bootstrap=settings.kafka,
                    topics=Topics(settings.topic_prefix),
                    group_id=settings.worker_group,
                    store=store,
                    publisher=publisher,
                    batch_size=settings.worker_batch_size,
                    metrics=metrics,
                    suppression=SuppressionConfig.from_settings(settings),
                )
                await worker.start()
                stack.push_async_callback(worker.stop)
            app = build_app(
                settings, roles, publisher=publisher, store=store, worker=worker, metrics=metrics
            )

            runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            try:
                await web.TCPSite(runner, settings.http_host, settings.http_port).start()
            except OSError as exc:
                raise ServiceStartError(
                    f"cannot listen on {settings.http_host}:{settings.http_port}"
                    f" ({exc.strerror}); choose another port with WAWINDOW_HTTP_PORT"
                ) from None
            starting.close()
            log.info("wawindow.started", roles=sorted(roles), port=settings.http_port)
            if ready is not None:
                task = asyncio.create_task(ready(Running(settings, store, worker)))
                stack.push_async_callback(_cancel, task)

            if worker is not None:
                tune_gc(settings.gc_young_threshold)
                consuming = asyncio.create_task(worker.run(stop), name="wawindow-worker")
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stop.set()
                stopping.cancel()
                try:  # the batch in hand is finished and committed, within a bound
                    async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                        await asyncio.shield(consuming)  # raises if it died
                except TimeoutError:
                    log.error("wawindow.shutdown_timeout", waited_s=SHUTDOWN_TIMEOUT_S)
                    await _cancel(consuming)
            else:
                await stop.wait()
            log.info("wawindow.stopping")
    finally:
        starting.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def tune_gc(young_threshold: int) -> None:
    """For a long-running consumer: what start-up made is moved out of the collector's sight
    (``gc.freeze``: never scanned again), and the young generation is collected after
    ``young_threshold`` allocations instead of 700, so a batch's short-lived objects do not
    set off a collection every few events (docs/performance.md, "Garbage collection")."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
