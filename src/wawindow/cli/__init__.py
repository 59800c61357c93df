"""The ``wawindow`` command. The environment is read here, once, and passed down."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from wawindow import logs
from wawindow.cli.consent import add_consent_commands
from wawindow.cli.dev import DEV_API_TOKEN, DEV_APP_SECRET, DEV_VERIFY_TOKEN, cmd_dev
from wawindow.cli.finance import cmd_counts, cmd_reconcile
from wawindow.cli.operate import cmd_replay, cmd_run, cmd_services, cmd_topics_create
from wawindow.cli.output import parse_roles
from wawindow.cli.state import cmd_events, cmd_window
from wawindow.errors import ConfigError, WawindowError
from wawindow.finance.counts import GRANULARITIES


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    env = dict(os.environ)
    try:
        handler: Callable[[argparse.Namespace, Mapping[str, str]], int] = args.handler
        return handler(args, env)
    except ConfigError as exc:
        logs.drain()  # the lines logged before it come first
        print(f"wawindow: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except WawindowError as exc:
        logs.drain()
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
    dev.add_argument(
        "--fresh",
        action="store_true",
        help="start over: wipe the Kafka and Redis data (and suppression key) kept from the"
        " last run",
    )
    dev.set_defaults(handler=cmd_dev)

    rep = sub.add_parser("replay", help="sign webhook bodies and POST them to a receiver")
    rep.add_argument("files", nargs="+", metavar="FILE", help="JSON (one body or a list) or JSONL")
    rep.add_argument("--url", help="the receiver (default http://127.0.0.1:PORT/webhook)")
    rep.add_argument("--rate", type=float, help="bodies per second (default: as fast as answered)")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    rep.set_defaults(handler=cmd_replay)

    run = sub.add_parser("run", help="run one role against the configured Kafka and Redis")
    run.add_argument(
        "role",
        type=parse_roles,
        metavar="ROLE",
        help="webhook, worker, api, all, or a comma-separated list such as webhook,api",
    )
    run.set_defaults(handler=cmd_run)

    topics = sub.add_parser("topics", help="manage the Kafka topics")
    topics_sub = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = topics_sub.add_parser("create", help="create the topics that do not exist yet")
    create.add_argument(
        "--partitions", type=int, help="partitions per topic (default: WAWINDOW_TOPIC_PARTITIONS)"
    )
    create.add_argument("--replication-factor", type=int, help="default: min(3, brokers)")
    create.set_defaults(handler=cmd_topics_create)

    window = sub.add_parser("window", help="a user's windows, conversations and opt-out state")
    window.add_argument("phone_number_id")
    window.add_argument("user", help="the user's BSUID or wa_id")
    window.set_defaults(handler=cmd_window)

    counts = sub.add_parser("counts", help="finance's counts by period of a time zone")
    counts.add_argument("--from", dest="start", required=True, help="a date or an ISO 8601 instant")
    counts.add_argument("--to", dest="end", required=True, help="exclusive; a date or an instant")
    counts.add_argument("--tz", default="UTC", help="an IANA time zone (default UTC)")
    counts.add_argument("--granularity", default="day", choices=GRANULARITIES)
    counts.add_argument("--waba-id")
    counts.add_argument("--phone-number-id")
    counts.add_argument("--format", default="table", choices=["table", "csv", "json"])
    counts.set_defaults(handler=cmd_counts)

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
    rec.set_defaults(handler=cmd_reconcile)

    add_consent_commands(sub)

    events = sub.add_parser("events", help="print window events as they are published")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.add_argument("--from-beginning", action="store_true", help="start at the oldest kept")
    events.set_defaults(handler=cmd_events)

    services = sub.add_parser("services", help="local Kafka and redis-server for development")
    services.add_argument("action", choices=["fetch", "up", "status", "down"])
    services.set_defaults(handler=cmd_services)
    return parser


__all__ = ["DEV_API_TOKEN", "DEV_APP_SECRET", "DEV_VERIFY_TOKEN", "main", "parse_roles"]
