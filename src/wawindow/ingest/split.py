"""Splitting one webhook body into normalized events, one per message, status, preference,
call, error or other change, each keyed by its conversation.

Every level is walked: ``entry[] x changes[] x messages[] / statuses[] / user_preferences[]
/ calls[] / errors[]``, so no item of a batch is dropped. Message content (text, captions,
media links, locations, ad copy, call sessions) stays here unless ``keep_content`` is set; what
leaves is metadata: ids, types, Meta's timestamps, pricing, errors, referral ids, and whether
an inbound text matched an opt-out keyword.

This module walks the envelope and routes each change by its field; the item readers are in
:mod:`wawindow.ingest.readers`. Pure functions only: no I/O, so the rules are unit-tested on
their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from wawindow.contracts import text
from wawindow.ingest.fields import Skip, normalize_keyword
from wawindow.ingest.readers import (
    ITEM_READERS,
    SCHEMA_VERSION,
    Context,
    SplitOptions,
    UserRef,
    WebhookEvent,
)

__all__ = [
    "OBJECT",
    "SCHEMA_VERSION",
    "Split",
    "SplitOptions",
    "UserRef",
    "WebhookEvent",
    "normalize_keyword",
    "split_body",
]

OBJECT = "whatsapp_business_account"
# Lists a field may carry whose items do not become events of their own, and which say
# nothing else of a change: Meta Business Agent's replies on ``standby`` come as message
# echoes, content and all; they leave as one content-free ``change``.
_ECHO_LISTS = {"standby": "message_echoes"}


@dataclass(slots=True)
class Split:
    """What one body became: the events, and what could not be read.

    ``rejected`` is set when the body as a whole is unreadable (not JSON, not Meta's
    envelope); ``problems`` lists items that were skipped while the rest was split. In both
    cases the receiver keeps the whole body on the dead-letter topic.
    """

    events: list[WebhookEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rejected: str | None = None

    @property
    def reason(self) -> str | None:
        if self.rejected:
            return self.rejected
        return "; ".join(self.problems) if self.problems else None


def split_body(raw: bytes, received_at_ms: int, options: SplitOptions | None = None) -> Split:
    """Split a verified webhook body into events; never raises on bad input."""
    options = options or SplitOptions()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Split(rejected=f"not JSON: {exc}")
    if not isinstance(body, dict):
        return Split(rejected="not a JSON object")
    if body.get("object") != OBJECT:
        return Split(rejected=f"object is {body.get('object')!r}, not {OBJECT!r}")
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        return Split(rejected="no entry list")

    out = Split()
    for e, entry in enumerate(entries):
        where = f"entry[{e}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            out.problems.append(f"{where}: no changes list")
            continue
        waba_id = text(entry.get("id"))
        if not waba_id:
            out.problems.append(f"{where}: no WABA id")
            continue
        for c, change in enumerate(entry["changes"]):
            here = f"{where}.changes[{c}]"
            try:
                _split_change(out, change, waba_id, entry, here, received_at_ms, options)
            except Skip as exc:
                out.problems.append(f"{here}: {exc}")
    if not out.events and not out.problems:
        out.rejected = "no events in body"
    return out


def _split_change(
    out: Split,
    change: Any,
    waba_id: str,
    entry: dict[str, Any],
    where: str,
    received_at_ms: int,
    options: SplitOptions,
) -> None:
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        raise Skip("no value object")
    field_name = text(change.get("field")) or ""
    value: dict[str, Any] = change["value"]
    ctx = Context(field_name, waba_id, value, received_at_ms, options)
    readers = ITEM_READERS.get(field_name)
    if readers is None:
        out.events.append(ctx.other_change(entry))
        return

    echoes = _ECHO_LISTS.get(field_name)
    has_echoes = echoes is not None and _nonempty(value.get(echoes))
    if not has_echoes and not any(_nonempty(value.get(name)) for name, _ in readers):
        names = ", ".join(name for name, _ in readers)
        raise Skip(f"field {field_name!r} has none of {names}")
    if ctx.phone_number_id is None:
        raise Skip("no metadata.phone_number_id")
    for name, reader in readers:
        items = value.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            out.problems.append(f"{where}.value.{name}: not a list")
            continue
        for i, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise Skip("not an object")
                out.events.append(reader(ctx, item))
            except Skip as exc:
                out.problems.append(f"{where}.value.{name}[{i}]: {exc}")
    if has_echoes:
        out.events.append(ctx.other_change(entry, content=True))


def _nonempty(items: Any) -> bool:
    return isinstance(items, list) and bool(items)
