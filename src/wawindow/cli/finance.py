"""Finance's commands: counts by period of a time zone, and reconciliation with Meta."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import orjson

from wawindow.cli.output import columns, out, settings_from, time_zone, with_redis, write_csv
from wawindow.errors import AnalyticsError, BadParameter, ConfigError
from wawindow.finance.counts import (
    CSV_COLUMNS,
    DIMENSIONS,
    CountsQuery,
    counts,
    parse_instant,
    read_counters,
)
from wawindow.finance.reconcile import day_span, parse_analytics, reconcile


def cmd_counts(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    settings.require("redis_url")
    tz = time_zone(args.tz)
    try:
        start, end = parse_instant("from", args.start, tz), parse_instant("to", args.end, tz)
    except BadParameter as exc:
        raise ConfigError(f"--{exc}") from None
    if end <= start:
        raise ConfigError("--to must be after --from")
    waba = frozenset({args.waba_id}) if args.waba_id else None
    query = CountsQuery(start, end, tz, args.granularity, waba, args.phone_number_id)
    rows = with_redis(settings, lambda redis: counts(redis, query))
    if args.format == "json":
        out(json.dumps(rows, indent=2))
    elif args.format == "csv":
        write_csv(rows, CSV_COLUMNS)
    else:
        out(counts_table(rows))
    return 0


def counts_table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns: period, number, metric, the metric's dimensions, count."""
    lines = [("period", "number", "metric", "dimensions", "count")]
    for row in rows:
        dims = " ".join(str(row[d]) for d in DIMENSIONS.get(row["metric"], ()) if d in row)
        lines.append(
            (row["period_start"], row["phone_number_id"], row["metric"], dims, str(row["count"]))
        )
    if len(lines) == 1:
        return "no counts in that range"
    return columns(lines, numeric=range(4, 5))


def cmd_reconcile(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    settings.require("redis_url")
    tz = time_zone(args.tz)
    numbers = {}
    for pair in args.number:
        display, sep, number_id = pair.partition("=")
        if not sep or not display or not number_id:
            raise ConfigError(f"--number: {pair!r} is not DISPLAY=PHONE_NUMBER_ID")
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
    stored = with_redis(settings, lambda redis: read_counters(redis, first, last))
    rows = reconcile(analytics, stored, tz, numbers)
    beyond = [r for r in rows if r.beyond(args.threshold)]
    dicts = [r.as_dict() | {"beyond_threshold": r.beyond(args.threshold)} for r in rows]
    if args.format == "json":
        out(json.dumps({"kind": analytics.kind, "threshold_percent": args.threshold,
                         "rows": dicts}, indent=2))  # fmt: skip
    elif args.format == "csv":
        write_csv(dicts, DRIFT_COLUMNS)
    else:
        out(_drift_table(dicts))
        out(
            f"{len(rows)} rows from {analytics.kind}; {len(beyond)} drift beyond"
            f" {args.threshold:g}% of Meta's figure"
        )
    return 3 if beyond else 0


DRIFT_COLUMNS = (
    "day", "phone_number_id", "category", "type", "meta", "tracker", "drift", "drift_percent",
    "beyond_threshold",
)  # fmt: skip


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
    return columns(lines, numeric=range(4, 8))
