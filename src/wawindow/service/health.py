"""``/healthz`` and ``/readyz`` for every role: liveness (for a worker: its consume loop and
sweeper made progress lately), and whether Kafka and Redis answer and the sweeper succeeds."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from wawindow.kafka.publisher import PUBLISHER


class Pinged(Protocol):
    """What readiness asks of the store: does Redis answer (within ``timeout_s``)?"""

    async def ping(self, timeout_s: float) -> bool: ...


class Looping(Protocol):
    """What liveness and readiness ask of a worker: are its loops making progress?"""

    def health(self) -> dict[str, bool]: ...


# typed by what the checks ask, so that serving /readyz needs nothing of the engine
REDIS = web.AppKey("redis_check", Pinged)
WORKER = web.AppKey("worker_check", Looping)
#: whether this process's roles need Kafka to be ready (the API alone does not)
NEEDS_KAFKA = web.AppKey("needs_kafka", bool)


#: how long each readiness check may take; the manifests' readiness probes wait longer
CHECK_S = 2.0


async def _none() -> None:
    return None


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP and, with a worker, its loops are not stuck."""
    worker = request.app.get(WORKER)
    if worker is not None and not worker.health()["live"]:
        return web.json_response({"status": "stuck"}, status=503)
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Kafka answers a metadata request (when the roles need it: the API alone
    serves without it and says ``"kafka": false`` only for information); Redis answers PING
    when a role uses it; the worker's sweeps succeed, and so do its batches."""
    store = request.app.get(REDIS)
    # both at once, each within CHECK_S: the probes' timeoutSeconds (k8s/base) allow for it
    kafka, redis = await asyncio.gather(
        request.app[PUBLISHER].ready(CHECK_S),
        store.ping(CHECK_S) if store is not None else _none(),
    )
    checks = {"kafka": kafka}
    needed = dict(checks) if request.app.get(NEEDS_KAFKA, True) else {}
    if store is not None:
        checks["redis"] = needed["redis"] = bool(redis)
    worker = request.app.get(WORKER)
    if worker is not None:
        health = worker.health()
        checks["sweeper"] = needed["sweeper"] = health["sweeping"]
        checks["batches"] = needed["batches"] = health["applying"]
    ok = all(needed.values())
    return web.json_response(
        {"status": "ready" if ok else "not_ready", **checks}, status=200 if ok else 503
    )
