"""The records of ``consent-events``: consent changes and erasures, as the API and the CLI
make them and the worker reads them. Pure: no I/O.

A record is JSON::

    {"kind": "consent", "event_id", "waba_id", "user", "category", "decision", "at",
     "source", "wording", "proof", "recorded_by", "recorded_at"}
    {"kind": "erasure", "event_id", "waba_id", "user", "at", "recorded_by", "recorded_at"}
    {"kind": "suppression", "event_id", "waba_id", "erased_at", "digests", "webhook",
     "consent", "categories"}

keyed by its ``event_id`` on a compacted topic (see :mod:`wawindow.kafka.topics`). A change's id is
a hash of what it says (WABA, user, category, decision, time, source, wording, proof), so the
same request, sent twice or imported twice, is one change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wawindow.contracts import DEFAULT_CONSENT_CATEGORIES, TIMESTAMPS, ChangeKind
from wawindow.errors import BadField
from wawindow.rules.consent import ALL

DECISIONS = ("opt_in", "opt_out")
#: a user: a wa_id (digits) or a BSUID (country code, a dot, then letters and digits)
USER = re.compile(r"[0-9]{5,20}|[A-Z]{2}\.[A-Za-z0-9._-]{1,120}")
#: a WABA id, as Meta gives it: digits
WABA = re.compile(r"[0-9]{1,32}")
#: what records already on the topic may name (written before WABA ids were checked as
#: digits): they are replayed as they are
RECORDED_WABA = re.compile(r"[0-9A-Za-z_-]{1,64}")
#: the fields a consent request may have; any other is refused, naming it
REQUEST_FIELDS = frozenset(
    ("waba_id", "user", "category", "decision", "at", "source", "wording", "proof", "recorded_by")
)
CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: a keyed hash of an id (wawindow.rules.suppression.digest)
DIGEST = re.compile(r"[0-9a-f]{32}")
MAX_TEXT = 500  # source, wording, proof, recorded_by
FUTURE_S = 5  # how far ahead of the tracker's clock a decision's time may be (clock skew)


@dataclass(frozen=True, slots=True)
class Categories:
    """The consent categories the operator defines (``WAWINDOW_CONSENT_CATEGORIES``); ``all``
    is always one."""

    names: tuple[str, ...] = DEFAULT_CONSENT_CATEGORIES

    def __contains__(self, name: object) -> bool:
        return name == ALL or name in self.names

    @property
    def shown(self) -> tuple[str, ...]:
        return (*self.names, ALL)


def consent_record(body: Any, now: int, categories: Categories, recorded_by: str) -> dict[str, Any]:
    """A consent change from a request body (API or CLI); raises :class:`BadField`."""
    if not isinstance(body, Mapping):
        raise BadField("body", "must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in REQUEST_FIELDS)
    if unknown:
        raise BadField(
            unknown[0], f"is not a field of a consent change ({', '.join(sorted(REQUEST_FIELDS))})"
        )
    waba_id, user = waba_and_user(body.get("waba_id"), body.get("user"))
    category = body.get("category")
    if not isinstance(category, str) or category not in categories:
        raise BadField("category", f"must be one of {', '.join(categories.shown)}")
    decision = body.get("decision")
    if decision not in DECISIONS:
        raise BadField("decision", "must be opt_in or opt_out")
    at = instant("at", body.get("at"), now)
    if at > now + FUTURE_S:
        raise BadField("at", "is in the future")
    texts = {name: _text(name, body.get(name)) for name in ("source", "wording", "proof")}
    # who recorded it is who authenticated; what the caller says of itself is kept beside it
    given = _text("recorded_by", body.get("recorded_by"))
    by = f"{recorded_by} ({given})" if given else recorded_by
    parts = (waba_id, user, category, decision, str(at), *texts.values())
    return {
        "kind": ChangeKind.CONSENT.value,
        "event_id": _digest("consent", *parts),
        "waba_id": waba_id,
        "user": user,
        "category": category,
        "decision": decision,
        "at": at,
        **texts,
        "recorded_by": by,
        "recorded_at": now,
    }


def erasure_record(waba_id: Any, user: Any, now: int, recorded_by: str) -> dict[str, Any]:
    """An erasure of a person at a WABA, as of ``now`` (a WABA id as records on the topic
    may name it: what was recorded under it can be erased)."""
    waba, person = waba_and_user(waba_id, user, RECORDED_WABA)
    return {
        "kind": ChangeKind.ERASURE.value,
        "event_id": _digest("erasure", waba, person, str(now)),
        "waba_id": waba,
        "user": person,
        "at": now,
        "recorded_by": recorded_by,
        "recorded_at": now,
    }


def waba_and_user(waba_id: Any, user: Any, waba: re.Pattern[str] = WABA) -> tuple[str, str]:
    if not isinstance(waba_id, str) or not waba.fullmatch(waba_id):
        raise BadField("waba_id", "must be a WABA id (digits)")
    if not isinstance(user, str) or not USER.fullmatch(user):
        raise BadField("user", "must be a wa_id (digits) or a BSUID (such as US.13491208655)")
    return waba_id, user


def instant(name: str, value: Any, now: int) -> int:
    """Unix seconds from an ISO 8601 string or a number; ``now`` when absent."""
    if value is None or value == "":
        return now
    if isinstance(value, bool):
        raise BadField(name, "must be an ISO 8601 time or Unix seconds")
    if isinstance(value, int | float):
        ts = int(value)
    elif isinstance(value, str) and value.strip().isdigit():  # Unix seconds, as in JSON
        ts = int(value.strip())
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadField(name, f"{value!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        ts = int(parsed.timestamp())
    else:
        raise BadField(name, "must be an ISO 8601 time or Unix seconds")
    if ts not in TIMESTAMPS or ts == 0:
        raise BadField(name, "is out of range")
    return ts


def invalid(rec: Any) -> str | None:
    """Why a record of ``consent-events`` cannot be applied (checked before anything is).
    A category the operator no longer defines still applies: the history stays whole."""
    if not isinstance(rec, Mapping) or not isinstance(rec.get("event_id"), str):
        return "record without an event_id"
    kind = rec.get("kind")
    if kind == ChangeKind.SUPPRESSION:
        return _invalid_suppression(rec)
    if kind not in (ChangeKind.CONSENT, ChangeKind.ERASURE):
        return f"record {rec['event_id']} has kind {kind!r}"
    try:
        waba_and_user(rec.get("waba_id"), rec.get("user"), RECORDED_WABA)
    except BadField as exc:
        return f"record {rec['event_id']}: {exc}"
    for name in ("at", "recorded_at"):
        value = rec.get(name)
        if type(value) is not int or value not in TIMESTAMPS:
            return f"record {rec['event_id']} has no Unix {name} in range: {value!r}"
    for name in ("source", "wording", "proof", "recorded_by"):
        if not isinstance(rec.get(name, ""), str):
            return f"record {rec['event_id']} has a {name} that is not text"
    if kind == ChangeKind.CONSENT:
        category = rec.get("category")
        if not isinstance(category, str) or not (category == ALL or CATEGORY.fullmatch(category)):
            return f"record {rec['event_id']} has no category"
        if rec.get("decision") not in DECISIONS:
            return f"record {rec['event_id']} has no decision"
    return None


def _invalid_suppression(rec: Mapping[str, Any]) -> str | None:
    """Why a suppression record (see :mod:`wawindow.rules.suppression`) cannot be applied."""
    name = f"suppression {rec['event_id']}"
    if not isinstance(rec.get("waba_id"), str) or not RECORDED_WABA.fullmatch(rec["waba_id"]):
        return f"{name} has no WABA id"
    erased_at = rec.get("erased_at")
    if type(erased_at) is not int or erased_at not in TIMESTAMPS or not erased_at:
        return f"{name} has no Unix erased_at in range: {erased_at!r}"
    digests = rec.get("digests")
    if not isinstance(digests, list) or not digests:
        return f"{name} has no digests"
    if not all(isinstance(d, str) and DIGEST.fullmatch(d) for d in digests):
        return f"{name} has a digest that is not a keyed hash"
    for part in ("webhook", "consent"):
        held = rec.get(part)
        if not isinstance(held, Mapping):
            return f"{name} has no {part} object"
        for category, h in held.items():
            if not (category == ALL or CATEGORY.fullmatch(str(category))):
                return f"{name} has a {part} category {category!r}"
            if not (
                isinstance(h, list)
                and len(h) == 3
                and type(h[0]) is int
                and isinstance(h[1], str)
                and type(h[2]) is int
            ):
                return f"{name} has a {part} opt-out that is not [at, source, until]"
    categories = rec.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return f"{name} has no categories"
    return None


def _text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadField(name, "must be a string")
    if len(value) > MAX_TEXT:
        raise BadField(name, f"must be at most {MAX_TEXT} characters")
    return value


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
