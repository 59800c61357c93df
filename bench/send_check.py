"""Benchmark: ``GET /v1/send-check`` of the real API against a bare aiohttp handler that reads
one Redis key, on the same Redis, driven by the same load in the same run.

A sender asks before every message, so send-check is the API's hot path. The requests cycle
through three answers a sender meets all day:

- ``free_form`` to a user whose service window is open (allowed);
- ``template:marketing`` to a user who stopped marketing messages (refused, ``opted_out``);
- ``template:utility`` to a user whose window closed days ago (allowed, at a price).

Each server runs as one process pinned to core 0 (Redis and the load generators on core 1):

1. peak rate: ``wrk`` (closed loop, 32 connections) for a fixed time against each server;
2. latency at half the API's peak: an open-loop generator sends at a constant rate and times
   every request from the moment it was due (bench/webhook_throughput.py's).

Usage: python bench/send_check.py [--seconds 10] [--connections 32] [--no-pin]
Writes bench/results/send_check.json and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from wawindow.contracts import CONVERSATION_KINDS
from wawindow.dev import samples
from wawindow.devservices.process import free_port
from wawindow.devservices.redis_server import RedisServer
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.ingest.split import split_body
from wawindow.redis.connection import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_throughput import (
    _server_core,
    measured,
    open_loop_raw,
    run_wrk,
    wait_listening,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "send_check.json"
TOKEN = "bench-send-check-token"
OPEN, STOPPED, CLOSED = "16505550301", "16505550302", "16505550303"
ASKED = [(OPEN, "free_form"), (STOPPED, "template:marketing"), (CLOSED, "template:utility")]
BARE_KEY = "bench:one-key"


def paths() -> list[str]:
    """The three send-checks, in turn."""
    return [
        "/v1/send-check?"
        + urlencode({"phone_number_id": samples.PHONE_NUMBER_ID, "user": u, "kind": k})
        for u, k in ASKED
    ]


async def seed(redis_url: str, now: int) -> None:
    """The three users' webhooks, applied as the worker applies them; and the bare handler's
    key, a document the size of a user's state."""
    bodies = [
        samples.messages_change(messages=[samples.text_message("wamid.o", now - 3600, wa_id=OPEN)]),
        samples.messages_change(
            messages=[samples.text_message("wamid.s", now - 3600, wa_id=STOPPED)]
        ),
        samples.preference(STOPPED, "stop", now - 1800),
        samples.messages_change(
            messages=[samples.text_message("wamid.c", now - 5 * 86_400, wa_id=CLOSED)]
        ),
    ]
    redis = await connect(redis_url)
    store = WindowStore(redis, EngineConfig())
    await store.load()
    for change in bodies:
        raw = samples.encode(samples.body(change))
        events = [orjson.loads(e.encode()) for e in split_body(raw, now * 1000).events]
        await store.apply([(e["key"], e) for e in events if e["kind"] in CONVERSATION_KINDS], now)
    state = await store.raw_state(f"{samples.PHONE_NUMBER_ID}:{OPEN}")
    await redis.set(BARE_KEY, state or b"{}")
    await redis.aclose()


def bare(port: int, redis_url: str) -> None:
    """The reference: an aiohttp handler that reads one Redis key and answers JSON."""
    from collections.abc import AsyncIterator

    from aiohttp import web
    from redis.asyncio import Redis

    client_key = web.AppKey("client", Redis)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.app[client_key].get(BARE_KEY)
        return web.json_response({"allowed": raw is not None, "bytes": len(raw or b"")})

    async def client(app: web.Application) -> AsyncIterator[None]:
        redis = await connect(redis_url)
        assert isinstance(redis, Redis)
        app[client_key] = redis
        yield
        await redis.aclose()

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/v1/send-check", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def wrk_script(path: Path) -> None:
    lines = ["local paths = {}"]
    lines += [f'paths[{i}] = "{p}"' for i, p in enumerate(paths(), start=1)]
    lines += [
        "local n = 0",
        "request = function()",
        "  n = (n % #paths) + 1",
        f'  return wrk.format("GET", paths[n], {{["Authorization"] = "Bearer {TOKEN}"}})',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def raw_requests(port: int) -> list[bytes]:
    return [
        f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        for p in paths()
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--bare", nargs=2, metavar=("PORT", "REDIS_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare(int(args.bare[0]), args.bare[1])
        return
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis")
        redis.start()
        try:
            if pin and redis.pid is not None:
                os.sched_setaffinity(redis.pid, {1})
                os.sched_setaffinity(0, {1})  # this process runs wrk and the open loop
            asyncio.run(seed(redis.url, int(time.time())))
            script = Path(tmp) / "send_check.lua"
            wrk_script(script)
            results = run(args, redis.url, script, pin)
        finally:
            redis.stop()
    results["ratio"] = round(results["api"]["rps"] / results["bare"]["rps"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def run(args: argparse.Namespace, redis_url: str, script: Path, pin: bool) -> dict[str, Any]:
    env = {
        "WAWINDOW_REDIS_URL": redis_url,
        # send-check does not use Kafka (consent writes would): nothing listens there
        "WAWINDOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "WAWINDOW_API_TOKENS": TOKEN,
        "WAWINDOW_SUPPRESSION_KEY": "bench-suppression-key",
        "WAWINDOW_LOG_LEVEL": "warning",
    }
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "seconds": args.seconds,
        "connections": args.connections,
        "pinned": pin,
        "asked": [f"{k} ({u})" for u, k in ASKED],
    }
    for name in ("bare", "api"):
        port = free_port()
        argv = (
            [sys.executable, __file__, "--bare", str(port), redis_url]
            if name == "bare"
            else [sys.executable, "-m", "wawindow", "run", "api"]
        )
        preexec = _server_core if pin else None
        proc = subprocess.Popen(
            argv, env={**os.environ, **env, "WAWINDOW_HTTP_PORT": str(port)}, preexec_fn=preexec
        )
        try:
            wait_listening(port, proc)
            url = f"http://127.0.0.1:{port}"
            answers = [
                json.loads(subprocess.run(
                    ["curl", "-s", "-H", f"Authorization: Bearer {TOKEN}", url + p],
                    capture_output=True, text=True, check=True,
                ).stdout)
                for p in paths()
            ]  # fmt: skip
            run_wrk(url, script, 3, args.connections)  # warm-up
            results[name] = measured(proc.pid, url, script, args.seconds, args.connections)
            results[name]["answers"] = answers
            if name == "api":
                half = results["api"]["rps"] / 2
                results["api_half_load"] = asyncio.run(
                    open_loop_raw(port, raw_requests(port), half, args.seconds)
                )
        finally:
            proc.terminate()
            proc.wait(10)
    return results


if __name__ == "__main__":
    main()
