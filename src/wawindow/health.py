"""``/healthz`` and ``/readyz`` for every role: liveness (for a worker: its consume loop and
sweeper made progress lately), and whether Kafka and Redis answer and the sweeper succeeds."""

from __future__ import annotations

from aiohttp import web

from wawindow.engine.store import WindowStore
from wawindow.engine.worker import Worker
from wawindow.publisher import Publisher

PUBLISHER = web.AppKey("publisher", Publisher)
STORE = web.AppKey("store", WindowStore)
WORKER = web.AppKey("worker", Worker)


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
    """Readiness: Kafka answers a metadata request; Redis answers PING when this role uses it."""
    checks = {"kafka": await request.app[PUBLISHER].ready()}
    store = request.app.get(STORE)
    if store is not None:
        checks["redis"] = await store.ping()
    worker = request.app.get(WORKER)
    if worker is not None:
        checks["sweeper"] = worker.health()["sweeping"]
    ok = all(checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not_ready", **checks}, status=200 if ok else 503
    )
