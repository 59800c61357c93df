"""``/healthz`` and ``/readyz`` for every role: liveness, and whether Kafka (and Redis, for
roles that use it) answer."""

from __future__ import annotations

from aiohttp import web

from wawindow.engine.store import WindowStore
from wawindow.publisher import Publisher

PUBLISHER = web.AppKey("publisher", Publisher)
STORE = web.AppKey("store", WindowStore)


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


async def healthz(_: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Kafka answers a metadata request; Redis answers PING when this role uses it."""
    checks = {"kafka": await request.app[PUBLISHER].ready()}
    store = request.app.get(STORE)
    if store is not None:
        checks["redis"] = await store.ping()
    ok = all(checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not_ready", **checks}, status=200 if ok else 503
    )
