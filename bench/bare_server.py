"""The ceiling for the receiver benchmark: an aiohttp handler that reads the body and says 200.

With ``--steps`` it also does part of the receiver's work, to show what each part costs:

- ``verify``: the signature check over the raw bytes (:mod:`wawindow.ingest.signature`);
- ``split``: the split into content-free events (:func:`wawindow.ingest.split.split_body`);
- ``body-record``: one Kafka record per body holding its events, awaited (``acks=all``);
- ``event-records``: one record per event, keyed by conversation, through the receiver's own
  publisher (what ``wawindow run webhook`` does).

Usage: python bench/bare_server.py PORT [--steps verify,split,event-records]
       [--bootstrap HOST:PORT --topic NAME]
"""

from __future__ import annotations

import argparse
import time

import orjson
from aiohttp import web

from wawindow.ingest import signature
from wawindow.ingest.split import split_body
from wawindow.kafka.publisher import Publisher, Record

SECRET = ("bench-app-secret",)
STEPS = ("verify", "split", "body-record", "event-records")
PUBLISHER = web.AppKey("publisher", Publisher)


def make_app(steps: set[str], bootstrap: str | None, topic: str | None) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        if "verify" in steps and not signature.verify(
            raw, request.headers.get(signature.HEADER), SECRET
        ):
            return web.Response(status=401, text="bad signature")
        if "split" in steps:
            events = split_body(raw, int(time.time() * 1000)).events
            assert topic is not None
            if "body-record" in steps:
                await request.app[PUBLISHER].publish([Record(topic, orjson.dumps(events))])
            elif "event-records" in steps:
                await request.app[PUBLISHER].publish(
                    [Record(topic, e.encode(), e.key.encode()) for e in events]
                )
        return web.Response(text="ok")

    async def publisher(app: web.Application):  # type: ignore[no-untyped-def]
        assert bootstrap is not None
        app[PUBLISHER] = Publisher(bootstrap, ack_timeout_ms=5_000)
        await app[PUBLISHER].start()
        yield
        await app[PUBLISHER].stop()

    app = web.Application(client_max_size=3 * 1024 * 1024)
    if steps & {"body-record", "event-records"}:
        app.cleanup_ctx.append(publisher)
    app.router.add_post("/webhook", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--steps", default="", help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    args = parser.parse_args()
    steps = {s for s in args.steps.split(",") if s}
    if steps - set(STEPS):
        parser.error(f"unknown steps: {', '.join(sorted(steps - set(STEPS)))}")
    app = make_app(steps, args.bootstrap, args.topic)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
