"""``GET /openapi.json``: the OpenAPI 3.1 description of every HTTP endpoint, served by every
role. The document is ``openapi.json`` beside this module; tests check it against the routes."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

DOCUMENT = resources.files(__package__).joinpath("openapi.json")


def add_openapi_route(app: web.Application) -> None:
    body = DOCUMENT.read_bytes()

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
