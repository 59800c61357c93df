"""``wawindow dev``: the whole tracker on one machine, with its own Kafka and Redis, and a
demo set."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from wawindow.cli.finance import counts_table
from wawindow.cli.output import out, settings_from
from wawindow.config import Settings, cache_dir
from wawindow.contracts import DAY
from wawindow.dev import demo
from wawindow.dev.replay import ProgressBar, replay
from wawindow.devservices import stack
from wawindow.engine.views import window_view
from wawindow.errors import WawindowError
from wawindow.finance.counts import (
    CountsQuery,
    counts,
)
from wawindow.finance.ratecard import load_rate_cards
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics
from wawindow.service.app import ROLES
from wawindow.service.roles import Running, check_files, run_roles

# Fixed, public values for `wawindow dev` only; never used when the settings name their own.
DEV_APP_SECRET = "wawindow-dev-app-secret"  # noqa: S105
DEV_VERIFY_TOKEN = "wawindow-dev-verify-token"  # noqa: S105
DEV_API_TOKEN = "wawindow-dev-api-token"  # noqa: S105


def cmd_dev(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    dev_env = {
        "WAWINDOW_APP_SECRETS": DEV_APP_SECRET,
        "WAWINDOW_VERIFY_TOKEN": DEV_VERIFY_TOKEN,
        "WAWINDOW_API_TOKENS": DEV_API_TOKEN,
        "WAWINDOW_API_WRITE_TOKENS": DEV_API_TOKEN,  # make dev may record consent
        "WAWINDOW_TOPIC_PARTITIONS": "3",
        "WAWINDOW_LOG_LEVEL": "warning",
        "WAWINDOW_HTTP_HOST": "127.0.0.1",  # this machine only, unless told otherwise
        **env,
    }
    settings = settings_from(dev_env)
    check_files(settings, ROLES)  # before anything starts
    cache = cache_dir(env)
    with contextlib.ExitStack() as exits:
        data = exits.enter_context(stack.DevData(stack.dev_data_dir(cache)))
        if args.fresh:
            data.wipe()
        kept = not data.is_empty()
        if "WAWINDOW_SUPPRESSION_KEY" not in env and "WAWINDOW_SUPPRESSION_KEY_FILE" not in env:
            dev_env["WAWINDOW_SUPPRESSION_KEY"] = data.suppression_key()
        # the clients' own lines (aiokafka, redis) go to a file, not between these lines
        library_log = data.path / "clients.log"
        settings = settings_from(dev_env, library_log=library_log)
        out(f"{'kept data from' if kept else 'fresh data in'} {data.path}"
            f"{'  (wawindow dev --fresh starts over)' if kept else ''}")  # fmt: skip
        if not settings.kafka_bootstrap or not settings.redis_url:
            out("starting a local Apache Kafka broker and redis-server …")
            services = exits.enter_context(stack.LocalServices.kept(cache, data.path))
            data.record(services)
            settings = settings_from({**dev_env, **services.env()}, library_log=library_log)
            out(f"  Kafka  {services.kafka_bootstrap}   log: {services.kafka.server_log}")
            out(f"  Redis  {services.redis_url}   log: {services.redis.log_path}")
        assert settings.kafka_bootstrap is not None
        asyncio.run(
            create_topics(
                settings.kafka,
                Topics(settings.topic_prefix),
                partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
        )
        env_file = exits.enter_context(_dev_env_file(cache, settings))
        asyncio.run(
            run_roles(
                settings,
                ROLES,
                lambda running: _dev_ready(running, args.demo, env_file, library_log),
            )
        )
    out("stopped; nothing left running.")
    return 0


@contextlib.contextmanager
def _dev_env_file(cache: Path, settings: Settings) -> Iterator[Path]:
    """``dev.env`` in the cache: the settings another shell needs to reach this ``dev``."""
    assert settings.kafka_bootstrap is not None
    assert settings.redis_url is not None
    values = {
        "WAWINDOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "WAWINDOW_REDIS_URL": settings.redis_url.value,
        "WAWINDOW_TOPIC_PREFIX": settings.topic_prefix,
        "WAWINDOW_HTTP_PORT": str(settings.http_port),
        "WAWINDOW_APP_SECRETS": ",".join(s.value for s in settings.app_secrets),
    }
    if settings.suppression_key is not None:
        values["WAWINDOW_SUPPRESSION_KEY"] = settings.suppression_key.value
    path = cache / "dev.env"
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


async def _dev_ready(running: Running, demo_set: bool, env_file: Path, library_log: Path) -> None:
    """Say where everything is; replay the demo set and summarise what the tracker made of it."""
    settings = running.settings
    topics = Topics(settings.topic_prefix)
    base = f"http://{_reach(settings.http_host)}:{settings.http_port}"
    token = settings.api_tokens[0].token.value if settings.api_tokens else DEV_API_TOKEN
    out(f"port      {settings.http_port} on {settings.http_host}"
        "   (WAWINDOW_HTTP_PORT, WAWINDOW_HTTP_HOST)")  # fmt: skip
    out(f"consent   policy {settings.consent_policy}   (WAWINDOW_CONSENT_POLICY: off, record,"
        " enforce)")  # fmt: skip
    out(f"rate card {_rate_card(settings.rate_card_file)}")
    out(f"receiver  {base}/webhook")
    if settings.app_secrets and settings.app_secrets[0].value == DEV_APP_SECRET:
        out(f"          app secret {DEV_APP_SECRET!r}, verify token {DEV_VERIFY_TOKEN!r}")
    out(f"topics    {', '.join(topics.all())}")
    out(f"api       {base}/v1/windows/{{phone_number_id}}/{{user}}, /v1/send-check, /v1/counts")
    out(f"openapi   {base}/openapi.json")
    out(f"clients   aiokafka's and redis's own log lines: {library_log}")
    if demo_set:
        try:
            await _replay_demo(running, f"{base}/webhook")
        except (WawindowError, TimeoutError, OSError, RedisError) as exc:
            out(f"demo set: not replayed ({exc}); the tracker runs on")
    first = demo.USERS[0]
    out("")
    out("try:")
    out(f"  curl -H 'Authorization: Bearer {token}' \\")
    out(f"    '{base}/v1/send-check?phone_number_id={first.phone_number_id}"
         f"&user={first.wa_id}&kind=free_form'")  # fmt: skip
    out("and in another shell, with this dev's settings:")
    out(f"  . {env_file}")
    out("  .venv/bin/wawindow events --from-beginning --follow")
    out("Ctrl-C stops everything.")


def _reach(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):  # every interface, this one among them
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _rate_card(path: str | None) -> str:
    """Which rate card send-check's money estimates come from."""
    if not path:
        return "none: send-check gives no amounts (WAWINDOW_RATE_CARD_FILE names one)"
    cards = load_rate_cards(path)
    if not cards:
        return f"{path}, with no cards: send-check gives no amounts"
    newest = cards[-1]
    return (
        f"{path}   ({len(cards)} card(s); the newest since {newest.since.isoformat()},"
        f" {newest.currency}, {len(newest.markets)} market(s))"
    )


def demo_counts(now: int) -> CountsQuery:
    """The counts the demo prints: every UTC day it touches (its oldest webhook is two days
    back soon after midnight)."""
    first = (now - demo.OLDEST_S) // DAY * DAY
    return CountsQuery(first, now // DAY * DAY + DAY, ZoneInfo("UTC"), "day")


async def _replay_demo(running: Running, url: str) -> None:
    assert running.store is not None
    assert running.worker is not None
    secret = running.settings.app_secrets[0].value
    first = demo.USERS[0]
    if await window_view(running.store, first.phone_number_id, first.wa_id, int(time.time())):
        out("\nthe demo set is in the kept data already; not replayed again"
            " (wawindow dev --fresh starts over)")  # fmt: skip
    else:
        bodies = demo.encoded(int(time.time()))
        out(f"\nreplaying the demo set: {len(bodies)} signed webhooks to {url}")
        result = await replay(bodies, url, secret, progress=ProgressBar(sys.stdout))
        if not result.ok:
            raise WawindowError(f"the receiver answered {dict(result.statuses)}")
    async with asyncio.timeout(60):
        # the lag lives in Kafka, so there is nothing to wait on but a poll
        while await running.worker.lag() != 0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    now = int(time.time())
    out("\ncounts, by UTC day (wawindow counts):")
    out(counts_table(await counts(running.store.redis, demo_counts(now))))
    out("\nthe demo's users (wawindow window PHONE_NUMBER_ID USER):")
    for user in demo.USERS:
        view = await window_view(running.store, user.phone_number_id, user.wa_id, now)
        out(f"  {user.phone_number_id} {user.wa_id}  {_window_line(view)}")
        out(f"      {user.story}")


def _window_line(view: dict[str, Any] | None) -> str:
    if view is None:
        return "not seen"
    parts = []
    for name, label in (("service_window", "service window"), ("entry_point_window", "FEP")):
        window = view[name]
        if window is not None:
            state = "open until" if window["open"] else "closed at"
            parts.append(f"{label} {state} {window['expires_at']}")
    parts += [f"{c['category']} conversation ({c['initiator']})" for c in view["conversations"]]
    if view["opted_out"]:
        parts.append("opted out")
    if view["marketing_opt_out"]:
        parts.append("no marketing")
    return "; ".join(parts) or "no window"
