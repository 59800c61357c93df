"""``wawindow consent …``: record, show and erase consent, and import an opt-in list.

Writes go to ``consent-events`` exactly as the API's do (the same records, the same ids), and
the worker applies them. ``import`` reads a CSV with the header
``waba_id,user,category,decision,at`` (and optionally ``source,wording,proof,recorded_by``):

- idempotent: a row's id is a hash of what it says, so importing a file twice records each
  change once; with Redis configured, changes already on record are not sent again, and
  the summary says how many were new (``N new, M already on record, K skipped``);
- ``at`` is an ISO 8601 time or Unix seconds, as in the API;
- resumable: after each chunk Kafka has acknowledged, the number of rows done is written to
  ``FILE.progress``; a run that stops is started again with the same command and goes on
  from there (``--restart`` ignores it);
- a row that cannot be read is reported with its line number and skipped; the command then
  exits 1, having imported every other row.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from wawindow.cli.output import out, settings_from, with_redis
from wawindow.config import Settings
from wawindow.dev.replay import ProgressBar
from wawindow.engine.people import People
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.views import consent_view
from wawindow.errors import BadField
from wawindow.kafka.consent_records import Categories, consent_record, erasure_record
from wawindow.kafka.publisher import Publisher, Record
from wawindow.keys import Topics

CHUNK = 500
COLUMNS = ("waba_id", "user", "category", "decision", "at")


def add_consent_commands(sub: Any) -> None:
    consent = sub.add_parser("consent", help="record, show, erase and import consent")
    actions = consent.add_subparsers(dest="action", required=True, metavar="ACTION")

    rec = actions.add_parser("record", help="record an opt-in or an opt-out")
    rec.add_argument("waba_id")
    rec.add_argument("user", help="the person's wa_id or BSUID")
    rec.add_argument("decision", choices=["opt_in", "opt_out"])
    rec.add_argument("--category", default="all", help="a consent category, or all (default)")
    rec.add_argument(
        "--at", help="when the person decided: ISO 8601 or Unix seconds (default: now)"
    )
    rec.add_argument("--source", help="where: website_form, phone, paper, …")
    rec.add_argument("--wording", help="the wording or form version shown")
    rec.add_argument("--proof", help="a reference to the record of it")
    rec.set_defaults(handler=cmd_record)

    show = actions.add_parser("show", help="a person's consent per category, and its history")
    show.add_argument("waba_id")
    show.add_argument("user")
    show.set_defaults(handler=cmd_show)

    erase = actions.add_parser("erase", help="erase a person: windows, consent, ledger, links")
    erase.add_argument("waba_id")
    erase.add_argument("user")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.set_defaults(handler=cmd_erase)

    imp = actions.add_parser("import", help="import an opt-in list (CSV); resumable")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--restart", action="store_true", help="ignore FILE.progress")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(handler=cmd_import)


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _publish(settings: Settings, records: Sequence[dict[str, Any]]) -> None:
    settings.require("kafka_bootstrap")
    topic = Topics(settings.topic_prefix).consent_events

    async def run() -> None:
        publisher = Publisher(settings.kafka, ack_timeout_ms=30_000)
        await publisher.start()
        try:
            await publisher.publish(
                [Record(topic, orjson.dumps(r), str(r["event_id"]).encode()) for r in records]
            )
        finally:
            await publisher.stop()

    asyncio.run(run())


def cmd_record(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    body = {
        "waba_id": args.waba_id, "user": args.user, "category": args.category,
        "decision": args.decision, "at": args.at, "source": args.source,
        "wording": args.wording, "proof": args.proof,
    }  # fmt: skip
    categories = Categories(settings.consent_categories)
    return _write(settings, lambda now: consent_record(body, now, categories, _who()))


def cmd_erase(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    who = f"{args.user} at WABA {args.waba_id}"
    if not args.yes:
        sys.stderr.write(
            f"Erase {who}: their windows, conversations, consent history, ledger references"
            " and id links? Their opt-outs in force are kept as a suppression (keyed hashes"
            " only). This cannot be undone. Type 'yes' to erase: "
        )
        sys.stderr.flush()
        answer = sys.stdin.readline()
        if not answer:  # nothing to read: no one to ask
            sys.stderr.write(f"\nwawindow: {who} not erased; pass --yes to confirm\n")
            return 2
        if answer.strip().lower() != "yes":
            sys.stderr.write("wawindow: not erased\n")
            return 1
    code = _write(settings, lambda now: erasure_record(args.waba_id, args.user, now, _who()))
    if code == 0:
        out(
            f"erasure of {who} recorded; the worker now erases their windows, conversations,"
            " consent history, ledger references and id links on every number of the WABA,"
            " and keeps their opt-outs as a suppression"
        )
    return code


def _write(settings: Settings, make: Callable[[int], dict[str, Any]]) -> int:
    """Make one record (exit 2 naming a bad field), put it on Kafka, print its id."""
    try:
        rec = make(int(time.time()))
    except BadField as exc:
        print(f"wawindow: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    _publish(settings, [rec])
    out(rec["event_id"])
    return 0


def _on_record(settings: Settings, records: Sequence[dict[str, Any]]) -> set[str] | None:
    """The ids of ``records`` already on record (None: no Redis configured to ask)."""
    if settings.redis_url is None or not records:
        return None if settings.redis_url is None else set()

    async def ask(redis: Any) -> set[str]:
        people = People(WindowStore(redis, EngineConfig.from_settings(settings)))
        found: set[str] = set()
        for start in range(0, len(records), CHUNK):
            found |= await people.on_record(records[start : start + CHUNK])
        return found

    return with_redis(settings, ask)


def cmd_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    categories = Categories(settings.consent_categories)

    async def show(redis: Any) -> dict[str, Any] | None:
        people = People(WindowStore(redis, EngineConfig.from_settings(settings)))
        on_file = await people.on_file(args.waba_id, args.user)
        return consent_view(args.waba_id, args.user, on_file, categories) if on_file.known else None

    view = with_redis(settings, show)
    if view is None:
        print(f"wawindow: no consent on file for {args.user} at {args.waba_id}", file=sys.stderr)  # noqa: T201
        return 1
    out(json.dumps(view, indent=2, ensure_ascii=False))
    return 0


def read_rows(
    path: Path, categories: Categories, now: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of a CSV opt-in list, and the problems of the rows that cannot be read
    (``line N: …``)."""
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            return [], [f"line 1: the header lacks {', '.join(missing)}"]
        for row in reader:
            if not row.get("at"):  # a default of "now" would make every run a new change
                problems.append(f"line {reader.line_num}: at: is required in a file")
                continue
            try:
                records.append(consent_record(dict(row), now, categories, _who()))
            except BadField as exc:
                problems.append(f"line {reader.line_num}: {exc}")
    return records, problems


def cmd_import(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = settings_from(env)
    path = Path(args.file)
    try:
        records, problems = read_rows(
            path, Categories(settings.consent_categories), int(time.time())
        )
    except OSError as exc:
        print(f"wawindow: cannot read {path}: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return 2
    known = _on_record(settings, records)
    new = records if known is None else [r for r in records if r["event_id"] not in known]
    progress_file = path.with_name(path.name + ".progress")
    done = 0
    if progress_file.exists() and not args.restart:
        done = min(int(progress_file.read_text().strip() or 0), len(records))
    bar = None if args.quiet else ProgressBar()
    for start in range(done, len(records), CHUNK):
        chunk = [r for r in records[start : start + CHUNK] if r in new]
        if chunk:
            _publish(settings, chunk)
        done = min(start + CHUNK, len(records))
        progress_file.write_text(f"{done}\n")
        if bar is not None:
            bar(done, len(records))
    for problem in problems:
        print(f"wawindow: {path}: {problem}", file=sys.stderr)  # noqa: T201
    if known is None:
        out(f"{path}: {len(records)} sent (not checked against what is on record:"
            f" no WAWINDOW_REDIS_URL), {len(problems)} skipped")  # fmt: skip
    else:
        out(f"{path}: {len(new)} new, {len(records) - len(new)} already on record,"
            f" {len(problems)} skipped")  # fmt: skip
    return 1 if problems else 0
