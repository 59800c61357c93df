"""Commands for operators: run roles, create topics, replay webhook bodies, local services."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from typing import Any

import structlog

from wawindow import logs
from wawindow.cli.output import out, settings_from
from wawindow.config import cache_dir
from wawindow.dev.replay import ProgressBar, load_bodies, replay
from wawindow.devservices import stack
from wawindow.devservices.broker import fetch_jars
from wawindow.devservices.redis_server import redis_server_binary
from wawindow.errors import ConfigError
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics
from wawindow.service.roles import check_files, required_settings, run_roles

log = structlog.get_logger("wawindow")


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env, for_people=False)
    roles: tuple[str, ...] = args.role
    settings.require(*required_settings(roles))
    check_files(settings, roles)
    log.info("wawindow.start", roles=list(roles), settings=settings.public())
    asyncio.run(run_roles(settings, roles))
    return 0


# -- topics -------------------------------------------------------------------------------


def cmd_topics_create(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    results = asyncio.run(
        create_topics(
            settings.kafka,
            Topics(settings.topic_prefix),
            partitions=args.partitions or settings.topic_partitions,
            replication_factor=args.replication_factor or settings.topic_replication_factor,
        )
    )
    for r in results:
        state = "created" if r.created else "exists"
        out(
            f"{r.name}: {state}, {r.partitions} partitions,"
            f" replication factor {r.replication_factor}"
        )
    return 0


def cmd_replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate must be a positive number of bodies per second")
    secret = settings.app_secrets[0].value if settings.app_secrets else None
    if secret is None:
        raise ConfigError("WAWINDOW_APP_SECRETS is required to sign the bodies")
    url = args.url or f"http://127.0.0.1:{settings.http_port}/webhook"
    bodies = load_bodies(args.files)
    progress = None if args.quiet else ProgressBar()
    result = asyncio.run(replay(bodies, url, secret, rate=args.rate, progress=progress))
    answers = ", ".join(f"{n} x {status}" for status, n in sorted(result.statuses.items()))
    unanswered = f", {result.failed} unanswered" if result.failed else ""
    out(f"{result.sent} bodies to {url}: {answers or 'none'}{unanswered}")
    return 0 if result.ok else 1


def cmd_services(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    logs.configure("warning", for_people=True)  # the clients' lines while a broker starts: none
    cache = cache_dir(env)
    if args.action == "fetch":
        redis_server_binary()
        libs = fetch_jars(cache)
        out(f"Kafka jars in {libs}")
        return 0
    if args.action == "up":
        _print_services(stack.up(cache))
        return 0
    if args.action == "status":
        state = stack.status(cache)
        if state is None:
            out("no local services running")
            return 1
        _print_services(state)
        return 0
    out("stopped" if stack.down(cache) else "nothing was running")
    return 0


def _print_services(state: Mapping[str, Any]) -> None:
    out(json.dumps({k: v for k, v in state.items() if k != "env"}, indent=2))
    for name, value in state["env"].items():
        out(f"export {name}={value}")
