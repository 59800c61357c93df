"""The ceiling for the receiver benchmark: an aiohttp handler that reads the body and says 200."""

from __future__ import annotations

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(text="ok")


def main() -> None:
    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post("/webhook", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
