"""Window transitions as CloudEvents 1.0 (structured JSON) for ``window-events``."""

from __future__ import annotations

import time
from typing import Any

import orjson

from wawindow.keys import group_of
from wawindow.rules.transitions import Transition

#: the Kafka protocol binding's structured mode: without it, a CloudEvents SDK reads the record
#: as binary mode and finds no ce_* headers
CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
HEADERS = (("content-type", CONTENT_TYPE.encode()),)

_TIME_FIELDS = ("opened_at", "expires_at", "closed_at", "at", "erased_at", "recorded_at")


def iso(ts: int) -> str:
    """Unix seconds as ISO 8601 UTC with a ``Z`` (through ``time.gmtime``: a datetime costs
    2.5 times as much, and every transition writes a few of these)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def subject(t: Transition) -> str:
    """Whom a transition is about, never empty: a group's conversation names the group (its
    participants are not the conversation's user), any other the user's BSUID, else the
    wa_id, else the user part of its key."""
    return group_of(t.key) or t.user_id or t.wa_id or t.key.rpartition(":")[2] or t.id


def to_cloudevent(t: Transition) -> dict[str, Any]:
    """The published form of a transition; ``id`` is the transition's deterministic id."""
    data: dict[str, Any] = {"waba_id": t.waba_id}
    if t.phone_number_id is not None:  # a person's events (consent, erasure) are the WABA's
        data["phone_number_id"] = t.phone_number_id
    data["user"] = {"user_id": t.user_id, "wa_id": t.wa_id}
    for name, value in t.data.items():
        data[name] = iso(int(value)) if name in _TIME_FIELDS and value is not None else value
    return {
        "specversion": "1.0",
        "id": t.id,
        "source": f"wawindow/{t.phone_number_id or 'waba/' + str(t.waba_id)}",
        "type": t.type.cloudevent_type,
        "subject": subject(t),
        "time": iso(t.time),
        "datacontenttype": "application/json",
        "data": data,
    }


def encode(t: Transition) -> bytes:
    return orjson.dumps(to_cloudevent(t))
