"""Splitting one webhook body into normalized events, one per message, status, preference,
error or other change, each keyed by its conversation.

Every level is walked: ``entry[] x changes[] x messages[] / statuses[] / user_preferences[]
/ errors[]``, so no item of a batch is dropped. Message content (text, captions, media links,
locations, ad copy) stays here unless ``keep_content`` is set; what leaves is metadata:
ids, types, Meta's timestamps, pricing, errors, referral ids, and whether an inbound text
matched an opt-out keyword.

Pure functions only: no I/O, so the rules are unit-tested on their own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from wawindow.keys import conversation_key

SCHEMA_VERSION = 1
OBJECT = "whatsapp_business_account"
# Fields whose values carry message content: only their shape leaves the receiver.
_CONTENT_FIELDS = frozenset({"smb_message_echoes", "history"})
# Anything but letters and digits, in any script: "Stop!", "opt-out" and "退订。" fold alike.
_KEYWORD_NOISE = re.compile(r"[\W_]+")


@dataclass(slots=True)
class UserRef:
    """A user as Meta names them: a business-scoped id (BSUID) and/or a phone-based wa_id."""

    user_id: str | None = None
    wa_id: str | None = None

    @property
    def key(self) -> str | None:
        """The id the tracker keys a user by: the BSUID when known, else the wa_id."""
        return self.user_id or self.wa_id


@dataclass(slots=True)
class WebhookEvent:
    """One normalized event, the value of a ``webhook-events`` record.

    ``event_id`` is deterministic (the same message, or the same status of a message, always
    gets the same id), so the worker can drop Meta's re-sends. ``timestamp`` is Meta's, in
    Unix seconds; ``received_at_ms`` is when the receiver read the POST. Treat it as
    immutable (not frozen only because a frozen dataclass is slower to build, on the hot path).
    """

    event_id: str
    kind: str  # message | status | user_preference | error | change
    field: str
    waba_id: str
    phone_number_id: str | None
    key: str
    user: UserRef | None
    timestamp: int | None
    received_at_ms: int
    data: dict[str, Any]
    schema: int = SCHEMA_VERSION

    def encode(self) -> bytes:
        return orjson.dumps(self)


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


@dataclass(frozen=True, slots=True)
class SplitOptions:
    keep_content: bool = False
    opt_out_keywords: frozenset[str] = frozenset()


class _Skip(Exception):
    """An item that cannot be read; the message says which and why."""


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
        waba_id = _text(entry.get("id"))
        if not waba_id:
            out.problems.append(f"{where}: no WABA id")
            continue
        for c, change in enumerate(entry["changes"]):
            here = f"{where}.changes[{c}]"
            try:
                _split_change(out, change, waba_id, entry, here, received_at_ms, options)
            except _Skip as exc:
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
        raise _Skip("no value object")
    field_name = _text(change.get("field")) or ""
    value: dict[str, Any] = change["value"]
    ctx = _Context(field_name, waba_id, value, received_at_ms, options)

    if field_name in ("messages", "user_preferences"):
        lists = {name: value.get(name) for name in ("messages", "statuses", "user_preferences")}
        lists["errors"] = value.get("errors")
        if not any(isinstance(items, list) and items for items in lists.values()):
            raise _Skip(f"field {field_name!r} has no messages, statuses, preferences or errors")
        if ctx.phone_number_id is None:
            raise _Skip("no metadata.phone_number_id")
        for name, reader in _READERS:
            items = lists[name]
            if items is None:
                continue
            if not isinstance(items, list):
                out.problems.append(f"{where}.value.{name}: not a list")
                continue
            for i, item in enumerate(items):
                try:
                    if not isinstance(item, dict):
                        raise _Skip("not an object")
                    out.events.append(reader(ctx, item))
                except _Skip as exc:
                    out.problems.append(f"{where}.value.{name}[{i}]: {exc}")
        return
    out.events.append(ctx.other_change(entry))


class _Context:
    """What the items of one change share: field, WABA, number, contacts, options."""

    def __init__(
        self,
        field_name: str,
        waba_id: str,
        value: dict[str, Any],
        received_at_ms: int,
        options: SplitOptions,
    ) -> None:
        self.field = field_name
        self.waba_id = waba_id
        self.value = value
        self.received_at_ms = received_at_ms
        self.options = options
        metadata = value.get("metadata")
        self.phone_number_id = (
            _text(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
        )
        contacts = value.get("contacts")
        self.contacts = [c for c in contacts if isinstance(c, dict)] if contacts else []

    # -- users ---------------------------------------------------------------------------

    def user(self, wa_id: str | None, user_id: str | None) -> UserRef | None:
        """A user from an item's own ids, completed from ``contacts[]`` when it links both."""
        if wa_id and not user_id:
            user_id = self._contact_field("wa_id", wa_id, "user_id")
        elif user_id and not wa_id:
            wa_id = self._contact_field("user_id", user_id, "wa_id")
        if not wa_id and not user_id:
            return None
        return UserRef(user_id=user_id, wa_id=wa_id)

    def _contact_field(self, by: str, value: str, want: str) -> str | None:
        for contact in self.contacts:
            if _text(contact.get(by)) == value:
                return _text(contact.get(want))
        return None

    def _event(
        self,
        kind: str,
        event_id: str,
        user: UserRef | None,
        timestamp: int | None,
        data: dict[str, Any],
        *,
        key: str | None = None,
    ) -> WebhookEvent:
        if key is None:
            key = (
                conversation_key(self.phone_number_id, user.key)
                if user and user.key and self.phone_number_id
                else self.waba_id
            )
        return WebhookEvent(
            event_id=event_id,
            kind=kind,
            field=self.field,
            waba_id=self.waba_id,
            phone_number_id=self.phone_number_id,
            key=key,
            user=user,
            timestamp=timestamp,
            received_at_ms=self.received_at_ms,
            data=data,
        )

    # -- items ---------------------------------------------------------------------------

    def message(self, item: dict[str, Any]) -> WebhookEvent:
        wamid = _required(item, "id")
        msg_type = _text(item.get("type")) or "unknown"
        user = self.user(_text(item.get("from")), _text(item.get("from_user_id")))
        if user is None:
            raise _Skip("message has neither from nor from_user_id")
        data: dict[str, Any] = {"wamid": wamid, "type": msg_type}
        context = item.get("context")
        if isinstance(context, dict) and context.get("id"):
            data["context_id"] = _text(context.get("id"))
        referral = item.get("referral")
        if isinstance(referral, dict):
            data["referral"] = {
                k: _text(referral.get(k))
                for k in ("source_type", "source_id", "ctwa_clid")
                if referral.get(k) is not None
            }
        errors = _errors(item.get("errors"))
        if errors:
            data["errors"] = errors
        data.update(_type_metadata(msg_type, item.get(msg_type)))
        keyword = _opt_out_keyword(msg_type, item, self.options.opt_out_keywords)
        if keyword:
            data["opt_out_keyword"] = keyword
        if self.options.keep_content and isinstance(item.get(msg_type), dict):
            data["content"] = item[msg_type]
        return self._event(
            "message",
            f"message:{self.phone_number_id}:{wamid}",
            user,
            _timestamp(item),
            data,
        )

    def status(self, item: dict[str, Any]) -> WebhookEvent:
        wamid = _required(item, "id")
        status = _required(item, "status")
        data: dict[str, Any] = {"wamid": wamid, "status": status}
        key: str | None = None
        user: UserRef | None
        if item.get("recipient_type") == "group":
            group = _required(item, "recipient_id")
            data["recipient_type"] = "group"
            user = None
            key = conversation_key(str(self.phone_number_id), f"group.{group}")
        else:
            user = self.user(_text(item.get("recipient_id")), _text(item.get("recipient_user_id")))
            if user is None:
                raise _Skip("status has neither recipient_id nor recipient_user_id")
        pricing = item.get("pricing")
        if isinstance(pricing, dict):
            data["pricing"] = {
                k: pricing[k]
                for k in ("billable", "pricing_model", "type", "category")
                if pricing.get(k) is not None
            }
        conversation = item.get("conversation")
        if isinstance(conversation, dict):
            conv: dict[str, Any] = {}
            if conversation.get("id") is not None:
                conv["id"] = _text(conversation["id"])
            if conversation.get("expiration_timestamp") is not None:
                conv["expiration_timestamp"] = _int(conversation["expiration_timestamp"])
            origin = conversation.get("origin")
            if isinstance(origin, dict) and origin.get("type") is not None:
                conv["origin_type"] = _text(origin["type"])
            data["conversation"] = conv
        errors = _errors(item.get("errors"))
        if errors:
            data["errors"] = errors
        return self._event(
            "status",
            f"status:{self.phone_number_id}:{wamid}:{status}",
            user,
            _timestamp(item),
            data,
            key=key,
        )

    def preference(self, item: dict[str, Any]) -> WebhookEvent:
        user = self.user(_text(item.get("wa_id")), _text(item.get("user_id")))
        if user is None:
            raise _Skip("preference has neither wa_id nor user_id")
        value = _required(item, "value")
        category = _text(item.get("category")) or "unknown"
        timestamp = _timestamp(item)
        data = {"category": category, "value": value}
        event_id = (
            f"user_preference:{self.phone_number_id}:{user.key}:{category}:{value}:{timestamp}"
        )
        return self._event("user_preference", event_id, user, timestamp, data)

    def value_error(self, item: dict[str, Any]) -> WebhookEvent:
        errors = _errors([item])
        if not errors:
            raise _Skip("error without a code")
        return self._event(
            "error",
            f"error:{self.phone_number_id}:{errors[0]['code']}:{_digest(item)}",
            None,
            _optional_timestamp(item),
            {"errors": errors},
            key=self.waba_id,
        )

    def other_change(self, entry: dict[str, Any]) -> WebhookEvent:
        """Any other subscription field (account, template, quality updates …), kept whole
        unless it is one of the fields that carry message content."""
        if self.field in _CONTENT_FIELDS and not self.options.keep_content:
            data: dict[str, Any] = {"value_keys": sorted(self.value)}
        else:
            data = {"value": self.value}
        timestamp = _int(entry.get("time")) if entry.get("time") is not None else None
        return self._event(
            "change",
            f"change:{self.waba_id}:{self.field}:{timestamp}:{_digest(self.value)}",
            None,
            timestamp,
            data,
            key=self.waba_id,
        )


_READERS = (
    ("messages", _Context.message),
    ("statuses", _Context.status),
    ("user_preferences", _Context.preference),
    ("errors", _Context.value_error),
)


# -- small readers ---------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if type(value) is str:  # the common case: Meta sends ids and enums as strings
        return value or None
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _Skip(f"{value!r} is not a Unix timestamp") from None


def _required(item: dict[str, Any], name: str) -> str:
    value = _text(item.get(name))
    if value is None:
        raise _Skip(f"no {name}")
    return value


def _timestamp(item: dict[str, Any]) -> int:
    if item.get("timestamp") is None:
        raise _Skip("no timestamp")
    return _int(item["timestamp"])


def _optional_timestamp(item: dict[str, Any]) -> int | None:
    return _int(item["timestamp"]) if item.get("timestamp") is not None else None


def _errors(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    out = []
    for err in value:
        if isinstance(err, dict) and err.get("code") is not None:
            out.append({"code": _int(err["code"]), "title": _text(err.get("title"))})
    return out


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _type_metadata(msg_type: str, obj: Any) -> dict[str, Any]:
    """The content-free facts of a type-specific object worth keeping."""
    if not isinstance(obj, dict):
        return {}
    if msg_type == "interactive" and obj.get("type"):
        return {"interactive_type": _text(obj["type"])}
    if msg_type == "unsupported" and obj.get("type"):
        return {"unsupported_type": _text(obj["type"])}
    if msg_type == "reaction":
        return {"reaction_to": _text(obj.get("message_id")), "reaction_removed": "emoji" not in obj}
    if msg_type == "system":
        return {
            "system": {
                k: _text(obj.get(k))
                for k in ("type", "wa_id", "user_id", "customer")
                if obj.get(k) is not None
            }
        }
    return {}


def normalize_keyword(text: str) -> str:
    """Fold a short reply for keyword matching: case, spaces and punctuation ignored."""
    return _KEYWORD_NOISE.sub(" ", text).strip().upper()


def _opt_out_keyword(msg_type: str, item: dict[str, Any], keywords: frozenset[str]) -> str | None:
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
