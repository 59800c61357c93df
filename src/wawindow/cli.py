"""The ``wawindow`` command. The environment is read here, once, and passed down."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import structlog
from aiokafka import AIOKafkaConsumer
from redis.exceptions import RedisError

from wawindow import demo, logs
from wawindow.config import Settings, cache_dir
from wawindow.devservices import stack
from wawindow.devservices.broker import fetch_jars
from wawindow.devservices.redis_server import redis_server_binary
from wawindow.engine.counts import (
    CSV_COLUMNS,
    DIMENSIONS,
    GRANULARITIES,
    BadParameter,
    CountsQuery,
    counts,
    parse_instant,
)
from wawindow.engine.reconcile import AnalyticsError, day_span, parse_analytics, reconcile
from wawindow.engine.store import (
    DAY,
    CounterRow,
    EngineConfig,
    WindowStore,
    connect,
    read_counters,
)
from wawindow.engine.views import window_view
from wawindow.errors import ConfigError, WawindowError
from wawindow.keys import Topics
from wawindow.replay import ProgressBar, load_bodies, replay
from wawindow.roles import ROLES, Running, required_settings, run_roles
from wawindow.topics import create_topics, wait_for_group_coordinator

log = structlog.get_logger("wawindow")

# Fixed, public values for `wawindow dev` only; never used when the settings name their own.
DEV_APP_SECRET = "wawindow-dev-app-secret"  # noqa: S105
DEV_VERIFY_TOKEN = "wawindow-dev-verify-token"  # noqa: S105
DEV_API_TOKEN = "wawindow-dev-api-token"  # noqa: S105


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    env = dict(os.environ)
    try:
        handler: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.handler
        return handler(args, env)
    except ConfigError as exc:
        print(f"wawindow: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except WawindowError as exc:
        print(f"wawindow: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wawindow",
        description="Track WhatsApp Business conversation windows from Meta's webhooks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser(
        "dev", help="run the whole tracker on this machine, with its own Kafka and Redis"
    )
    dev.add_argument(
        "--no-demo", dest="demo", action="store_false", help="do not replay the demo set"
    )
    dev.set_defaults(handler=_cmd_dev)

    rep = sub.add_parser("replay", help="sign webhook bodies and POST them to a receiver")
    rep.add_argument("files", nargs="+", metavar="FILE", help="JSON (one body or a list) or JSONL")
    rep.add_argument("--url", help="the receiver (default http://127.0.0.1:PORT/webhook)")
    rep.add_argument("--rate", type=float, help="bodies per second (default: as fast as answered)")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    rep.set_defaults(handler=_cmd_replay)

    run = sub.add_parser("run", help="run one role against the configured Kafka and Redis")
    run.add_argument(
        "role",
        type=_roles,
        metavar="ROLE",
        help="webhook, worker, api, all, or a comma-separated list such as webhook,api",
    )
    run.set_defaults(handler=_cmd_run)

    topics = sub.add_parser("topics", help="manage the Kafka topics")
    topics_sub = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = topics_sub.add_parser("create", help="create the topics that do not exist yet")
    create.add_argument(
        "--partitions", type=int, help="partitions per topic (default: WAWINDOW_TOPIC_PARTITIONS)"
    )
    create.add_argument("--replication-factor", type=int, help="default: min(3, brokers)")
    create.set_defaults(handler=_cmd_topics_create)

    window = sub.add_parser("window", help="a user's windows, conversations and opt-out state")
    window.add_argument("phone_number_id")
    window.add_argument("user", help="the user's BSUID or wa_id")
    window.set_defaults(handler=_cmd_window)

    counts = sub.add_parser("counts", help="finance's counts by period of a time zone")
    counts.add_argument("--from", dest="start", required=True, help="a date or an ISO 8601 instant")
    counts.add_argument("--to", dest="end", required=True, help="exclusive; a date or an instant")
    counts.add_argument("--tz", default="UTC", help="an IANA time zone (default UTC)")
    counts.add_argument("--granularity", default="day", choices=GRANULARITIES)
    counts.add_argument("--waba-id")
    counts.add_argument("--phone-number-id")
    counts.add_argument("--format", default="table", choices=["table", "csv", "json"])
    counts.set_defaults(handler=_cmd_counts)

    rec = sub.add_parser(
        "reconcile", help="compare the tracker's counts with a saved Meta analytics response"
    )
    rec.add_argument(
        "--analytics",
        required=True,
        metavar="FILE",
        help="a saved pricing_analytics or conversation_analytics response (JSON)",
    )
    rec.add_argument("--tz", default="UTC", help="the time zone whose days group the drift")
    rec.add_argument(
        "--number",
        action="append",
        default=[],
        metavar="DISPLAY=PHONE_NUMBER_ID",
        help="map Meta's phone_number to the tracker's phone_number_id (repeatable)",
    )
    rec.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help="exit 3 when any row drifts by more than this share of Meta's figure (default 0)",
    )
    rec.add_argument("--format", default="table", choices=["table", "csv", "json"])
    rec.set_defaults(handler=_cmd_reconcile)

    events = sub.add_parser("events", help="print window events as they are published")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.add_argument("--from-beginning", action="store_true", help="start at the oldest kept")
    events.set_defaults(handler=_cmd_events)

    services = sub.add_parser("services", help="local Kafka and redis-server for development")
    services.add_argument("action", choices=["fetch", "up", "status", "down"])
    services.set_defaults(handler=_cmd_services)
    return parser


def _roles(value: str) -> tuple[str, ...]:
    if value == "all":
        return ROLES
    roles = tuple(dict.fromkeys(r.strip() for r in value.split(",")))
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(
            f"{value!r}: roles are {', '.join(ROLES)}, all, or a comma-separated list"
        )
    return roles


def _settings(env: Mapping[str, str]) -> Settings:
    settings = Settings.from_env(env)
    logs.configure(settings.log_level, settings.log_format)
    return settings


# -- run ----------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
    roles: tuple[str, ...] = args.role
    settings.require(*required_settings(roles))
    log.info("wawindow.start", roles=list(roles), settings=settings.public())
    asyncio.run(run_roles(settings, roles))
    return 0


# -- topics -------------------------------------------------------------------------------


def _cmd_topics_create(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
    settings.require("kafka_bootstrap")
    assert settings.kafka_bootstrap is not None
    results = asyncio.run(
        create_topics(
            settings.kafka_bootstrap,
            Topics(settings.topic_prefix),
            partitions=args.partitions or settings.topic_partitions,
            replication_factor=args.replication_factor or settings.topic_replication_factor,
        )
    )
    for r in results:
        state = "created" if r.created else "exists"
        _out(
            f"{r.name}: {state}, {r.partitions} partitions,"
            f" replication factor {r.replication_factor}"
        )
    return 0


# -- window and events ----------------------------------------------------------------------


def _cmd_window(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
    settings.require("redis_url")
    assert settings.redis_url is not None
    redis_url = settings.redis_url.value

    async def look() -> dict[str, Any] | None:
        redis = await connect(redis_url)
        try:
            return await window_view(
                WindowStore(redis, EngineConfig()),
                args.phone_number_id,
                args.user,
                int(time.time()),
            )
        finally:
            await redis.aclose()

    view = asyncio.run(look())
    if view is None:
        print(f"wawindow: no state for {args.user} on {args.phone_number_id}", file=sys.stderr)  # noqa: T201
        return 1
    _out(json.dumps(view, indent=2, ensure_ascii=False))
    return 0


def _cmd_counts(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
    settings.require("redis_url")
    assert settings.redis_url is not None
    try:
        tz = ZoneInfo(args.tz)
        start, end = parse_instant("from", args.start, tz), parse_instant("to", args.end, tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz: {args.tz!r} is not an IANA time zone name") from None
    except BadParameter as exc:
        raise ConfigError(f"--{exc}") from None
    if end <= start:
        raise ConfigError("--to must be after --from")
    waba = frozenset({args.waba_id}) if args.waba_id else None
    query = CountsQuery(start, end, tz, args.granularity, waba, args.phone_number_id)
    redis_url = settings.redis_url.value

    async def read() -> list[dict[str, Any]]:
        redis = await connect(redis_url)
        try:
            return await counts(redis, query)
        finally:
            await redis.aclose()

    rows = asyncio.run(read())
    if args.format == "json":
        _out(json.dumps(rows, indent=2))
    elif args.format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        _out(_table(rows))
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns: period, number, metric, the metric's dimensions, count."""
    lines = [("period", "number", "metric", "dimensions", "count")]
    for row in rows:
        dims = " ".join(str(row[d]) for d in DIMENSIONS.get(row["metric"], ()) if d in row)
        lines.append(
            (row["period_start"], row["phone_number_id"], row["metric"], dims, str(row["count"]))
        )
    if len(lines) == 1:
        return "no counts in that range"
    return _columns(lines, numeric=range(4, 5))


def _columns(lines: Sequence[Sequence[str]], numeric: Collection[int]) -> str:
    """Aligned columns; numeric ones to the right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )


def _cmd_reconcile(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
    settings.require("redis_url")
    assert settings.redis_url is not None
    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz: {args.tz!r} is not an IANA time zone name") from None
    numbers = {}
    for pair in args.number:
        display, sep, number_id = pair.partition("=")
        if not sep or not display or not number_id:
            raise ConfigError(f"--number: {pair!r} is not DISPLAY=PHONE_NUMBER_ID")
        numbers[display.lstrip("+")] = number_id
        numbers[display] = number_id
    try:
        with open(args.analytics, "rb") as f:
            analytics = parse_analytics(orjson.loads(f.read()))
    except OSError as exc:
        raise ConfigError(f"--analytics: cannot read {args.analytics}: {exc.strerror}") from None
    except orjson.JSONDecodeError:
        raise ConfigError(f"--analytics: {args.analytics} is not JSON") from None
    except AnalyticsError as exc:
        raise ConfigError(f"--analytics: {exc}") from None
    first, last = day_span(analytics)
    redis_url = settings.redis_url.value

    async def read() -> list[CounterRow]:
        redis = await connect(redis_url)
        try:
            return await read_counters(redis, first, last)
        finally:
            await redis.aclose()

    rows = reconcile(analytics, asyncio.run(read()), tz, numbers)
    beyond = [r for r in rows if r.beyond(args.threshold)]
    dicts = [r.as_dict() | {"beyond_threshold": r.beyond(args.threshold)} for r in rows]
    if args.format == "json":
        _out(json.dumps({"kind": analytics.kind, "threshold_percent": args.threshold,
                         "rows": dicts}, indent=2))  # fmt: skip
    elif args.format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(dicts[0]) if dicts else ["day"],
                                lineterminator="\n")  # fmt: skip
        writer.writeheader()
        writer.writerows(dicts)
        sys.stdout.write(buffer.getvalue())
    else:
        _out(_drift_table(dicts))
        _out(
            f"{len(rows)} rows from {analytics.kind}; {len(beyond)} drift beyond"
            f" {args.threshold:g}% of Meta's figure"
        )
    return 3 if beyond else 0


def _drift_table(rows: list[dict[str, Any]]) -> str:
    header = ("day", "number", "category", "type", "meta", "tracker", "drift", "drift %", "")
    lines = [header]
    for r in rows:
        share = "-" if r["drift_percent"] is None else f"{r['drift_percent']:+.2f}"
        lines.append(
            (
                r["day"],
                r["phone_number_id"],
                r["category"],
                r["type"],
                str(r["meta"]),
                str(r["tracker"]),
                f"{r['drift']:+d}",
                share,
                "<- beyond" if r["beyond_threshold"] else "",
            )
        )
    return _columns(lines, numeric=range(4, 8))


def _cmd_events(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
    settings.require("kafka_bootstrap")
    assert settings.kafka_bootstrap is not None
    topic = Topics(settings.topic_prefix).window_events
    # Ctrl-C ends --follow; main() turns it into exit status 130
    asyncio.run(_print_events(settings.kafka_bootstrap, topic, args.follow, args.from_beginning))
    return 0


async def _print_events(bootstrap: str, topic: str, follow: bool, from_beginning: bool) -> None:
    """Print each event as one JSON line; without --follow, stop at the end of the topic."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning or not follow else "latest",
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        end = await consumer.end_offsets(list(consumer.assignment()))
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    _out(record.value.decode())
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in end}
                if all(positions[tp] >= offset for tp, offset in end.items()):
                    return
    finally:
        await consumer.stop()


# -- services -----------------------------------------------------------------------------


def _cmd_services(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    cache = cache_dir(env)
    if args.action == "fetch":
        redis_server_binary()
        libs = fetch_jars(cache)
        _out(f"Kafka jars in {libs}")
        return 0
    if args.action == "up":
        _print_services(stack.up(cache))
        return 0
    if args.action == "status":
        state = stack.status(cache)
        if state is None:
            _out("no local services running")
            return 1
        _print_services(state)
        return 0
    _out("stopped" if stack.down(cache) else "nothing was running")
    return 0


def _print_services(state: Mapping[str, Any]) -> None:
    _out(json.dumps({k: v for k, v in state.items() if k != "env"}, indent=2))
    for name, value in state["env"].items():
        _out(f"export {name}={value}")


# -- dev ----------------------------------------------------------------------------------


def _cmd_dev(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    dev_env = {
        "WAWINDOW_APP_SECRETS": DEV_APP_SECRET,
        "WAWINDOW_VERIFY_TOKEN": DEV_VERIFY_TOKEN,
        "WAWINDOW_API_TOKENS": DEV_API_TOKEN,
        "WAWINDOW_TOPIC_PARTITIONS": "3",
        "WAWINDOW_LOG_LEVEL": "warning",
        **env,
    }
    settings = _settings(dev_env)
    with contextlib.ExitStack() as exits:
        if not settings.kafka_bootstrap or not settings.redis_url:
            _out("starting a local Apache Kafka broker and redis-server …")
            services = exits.enter_context(stack.LocalServices.create(cache_dir(env)))
            settings = _settings({**dev_env, **services.env()})
            _out(f"  Kafka  {services.kafka_bootstrap}   log: {services.kafka.server_log}")
            _out(f"  Redis  {services.redis_url}   log: {services.redis.log_path}")
        assert settings.kafka_bootstrap is not None
        asyncio.run(
            create_topics(
                settings.kafka_bootstrap,
                Topics(settings.topic_prefix),
                partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
        )
        asyncio.run(wait_for_group_coordinator(settings.kafka_bootstrap, settings.worker_group))
        env_file = exits.enter_context(_dev_env_file(cache_dir(env), settings))
        asyncio.run(
            run_roles(settings, ROLES, lambda running: _dev_ready(running, args.demo, env_file))
        )
    _out("stopped; nothing left running.")
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
    path = cache / "dev.env"
    cache.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


async def _dev_ready(running: Running, demo_set: bool, env_file: Path) -> None:
    """Say where everything is; replay the demo set and summarise what the tracker made of it."""
    settings = running.settings
    topics = Topics(settings.topic_prefix)
    base = f"http://127.0.0.1:{settings.http_port}"
    token = settings.api_tokens[0].token.value if settings.api_tokens else DEV_API_TOKEN
    _out(f"receiver  {base}/webhook")
    if settings.app_secrets and settings.app_secrets[0].value == DEV_APP_SECRET:
        _out(f"          app secret {DEV_APP_SECRET!r}, verify token {DEV_VERIFY_TOKEN!r}")
    _out(f"topics    {', '.join(topics.all())}")
    _out(f"api       {base}/v1/windows/{{phone_number_id}}/{{user}}, /v1/send-check, /v1/counts")
    _out(f"openapi   {base}/openapi.json")
    if demo_set:
        try:
            await _replay_demo(running, f"{base}/webhook")
        except (WawindowError, TimeoutError, OSError, RedisError) as exc:
            _out(f"demo set: not replayed ({exc}); the tracker runs on")
    first = demo.USERS[0]
    _out("")
    _out("try:")
    _out(f"  curl -H 'Authorization: Bearer {token}' \\")
    _out(f"    '{base}/v1/send-check?phone_number_id={first.phone_number_id}"
         f"&user={first.wa_id}&kind=free_form'")  # fmt: skip
    _out("and in another shell, with this dev's settings:")
    _out(f"  . {env_file}")
    _out("  .venv/bin/wawindow events --from-beginning --follow")
    _out("Ctrl-C stops everything.")


async def _replay_demo(running: Running, url: str) -> None:
    assert running.store is not None
    assert running.worker is not None
    secret = running.settings.app_secrets[0].value
    bodies = demo.encoded(int(time.time()))
    _out(f"\nreplaying the demo set: {len(bodies)} signed webhooks to {url}")
    result = await replay(bodies, url, secret, progress=ProgressBar(sys.stdout))
    if not result.ok:
        raise WawindowError(f"the receiver answered {dict(result.statuses)}")
    async with asyncio.timeout(60):
        # the lag lives in Kafka, so there is nothing to wait on but a poll
        while await running.worker.lag() != 0:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    now = int(time.time())
    today = now // DAY * DAY
    query = CountsQuery(today - DAY, today + DAY, ZoneInfo("UTC"), "day")
    _out("\ncounts, by UTC day (wawindow counts):")
    _out(_table(await counts(running.store.redis, query)))
    _out("\nthe demo's users (wawindow window PHONE_NUMBER_ID USER):")
    for user in demo.USERS:
        view = await window_view(running.store, user.phone_number_id, user.wa_id, now)
        _out(f"  {user.phone_number_id} {user.wa_id}  {_window_line(view)}")
        _out(f"      {user.story}")


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


# -- replay -------------------------------------------------------------------------------


def _cmd_replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(env)
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
    _out(f"{result.sent} bodies to {url}: {answers or 'none'}{unanswered}")
    return 0 if result.ok else 1


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
