"""Reading the values of Meta's webhook fields: ids and enums as text, integers and
timestamps in range, error lists, digests, the content-free facts of a message type, and
whether a short reply is an opt-out keyword. Used by the item readers
(:mod:`wawindow.ingest.readers`); pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from wawindow.contracts import TIMESTAMPS, text
from wawindow.errors import Unreadable

# Anything but letters and digits, in any script: "Stop!", "opt-out" and "退订。" fold alike.
_KEYWORD_NOISE = re.compile(r"[\W_]+")
# Meta's older name for the number-change system message (pywa's SystemType maps it alike).
_SYSTEM_ALIASES = {"customer_changed_number": "user_changed_number"}


class Skip(Unreadable):
    """An item of a body that cannot be read; the message says which and why."""


def to_int(value: Any, low: int = -(2**63), high: int = 2**63 - 1) -> int:
    """An integer in ``[low, high]`` (64 bits by default: what every later stage can encode)."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise Skip(f"{str(value)[:40]!r} is not an integer") from None
    if not low <= number <= high:
        raise Skip(f"{str(number)[:40]} is out of range")
    return number


def to_timestamp(value: Any, name: str = "timestamp") -> int:
    """Meta's Unix seconds; a number outside the times Meta sends is not one (the reason
    names the field ``name``)."""
    try:
        return to_int(value, TIMESTAMPS.start, TIMESTAMPS.stop - 1)
    except Skip as exc:
        raise Skip(f"{name}: {exc}") from None


def required(item: dict[str, Any], name: str) -> str:
    value = text(item.get(name))
    if value is None:
        raise Skip(f"no {name}")
    return value


def timestamp_of(item: dict[str, Any]) -> int:
    if item.get("timestamp") is None:
        raise Skip("no timestamp")
    return to_timestamp(item["timestamp"])


def optional_timestamp(item: dict[str, Any]) -> int | None:
    return to_timestamp(item["timestamp"]) if item.get("timestamp") is not None else None


def error_list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    out = []
    for err in value:
        if isinstance(err, dict) and err.get("code") is not None:
            out.append({"code": to_int(err["code"]), "title": text(err.get("title"))})
    return out


def digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def type_metadata(msg_type: str, obj: Any) -> dict[str, Any]:
    """The content-free facts of a type-specific object worth keeping."""
    if not isinstance(obj, dict):
        return {}
    if msg_type == "interactive" and obj.get("type"):
        return {"interactive_type": text(obj["type"])}
    if msg_type == "unsupported" and obj.get("type"):
        return {"unsupported_type": text(obj["type"])}
    if msg_type == "reaction":
        return {"reaction_to": text(obj.get("message_id")), "reaction_removed": "emoji" not in obj}
    if msg_type == "system":
        return {"system": system_fields(obj)}
    return {}


def system_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A system message's ``type`` and the user's new ids: ``wa_id`` (new number) and
    ``user_id`` (new BSUID), whichever it names; never its ``body`` (it quotes names)."""
    sys_type = text(obj.get("type"))
    found = {
        "type": _SYSTEM_ALIASES.get(sys_type or "", sys_type),
        "wa_id": text(obj.get("wa_id")) or text(obj.get("new_wa_id")),  # new_wa_id: pre-v12
        "user_id": text(obj.get("user_id")),
    }
    return {k: v for k, v in found.items() if v is not None}


def normalize_keyword(value: str) -> str:
    """Fold a short reply for keyword matching: case, spaces and punctuation ignored."""
    return _KEYWORD_NOISE.sub(" ", value).strip().upper()


def opt_out_keyword(msg_type: str, item: dict[str, Any], keywords: frozenset[str]) -> str | None:
    """The opt-out keyword an inbound text or button reply consists of, if any.

    Only a reply that *is* a keyword counts ("stop", "STOP!", "退订"), not one that merely
    contains it ("don't stop"), so a normal conversation never opts a user out.
    """
    if not keywords:
        return None
    candidates: list[Any] = []
    if msg_type == "text" and isinstance(item.get("text"), dict):
        candidates.append(item["text"].get("body"))
    elif msg_type == "button" and isinstance(item.get("button"), dict):
        candidates += [item["button"].get("payload"), item["button"].get("text")]
    elif msg_type == "interactive" and isinstance(item.get("interactive"), dict):
        for reply in ("button_reply", "list_reply"):
            if isinstance(item["interactive"].get(reply), dict):
                candidates += [item["interactive"][reply].get(k) for k in ("id", "title")]
    for candidate in candidates:
        if isinstance(candidate, str) and len(candidate) <= 64:
            folded = normalize_keyword(candidate)
            if folded in keywords:
                return folded
    return None
