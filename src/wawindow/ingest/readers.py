"""Reading the items of one webhook change into events: the readers behind
:func:`wawindow.ingest.split.split_body`, which walks the envelope and picks a reader per list.

One reader per kind of item: inbound messages (also a group's, also on ``standby``),
message statuses (also a group participant's), user preferences, value-level errors, calls and
call statuses, and any other change. Each keeps the item's metadata and drops its content:
no text, captions, media, locations, ad copy, system-message bodies, call sessions (SDP).
The values of single fields are read by :mod:`wawindow.ingest.fields`.

Pure functions only: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from wawindow.contracts import text
from wawindow.ingest.fields import (
    Skip,
    digest,
    error_list,
    opt_out_keyword,
    optional_timestamp,
    required,
    timestamp_of,
    to_timestamp,
    type_metadata,
)
from wawindow.keys import conversation_key, group_conversation_key

SCHEMA_VERSION = 1
# Fields whose values carry message content: only their shape leaves the receiver.
CONTENT_FIELDS = frozenset({"smb_message_echoes", "history"})


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
    kind: str  # message | status | user_preference | call | error | change
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
        # the same JSON as orjson.dumps(self), written out: orjson serializes a dict in about
        # two thirds of a dataclass's time (docs/performance.md)
        user = self.user
        return orjson.dumps(
            {
                "event_id": self.event_id,
                "kind": self.kind,
                "field": self.field,
                "waba_id": self.waba_id,
                "phone_number_id": self.phone_number_id,
                "key": self.key,
                "user": None if user is None else {"user_id": user.user_id, "wa_id": user.wa_id},
                "timestamp": self.timestamp,
                "received_at_ms": self.received_at_ms,
                "data": self.data,
                "schema": self.schema,
            }
        )


@dataclass(frozen=True, slots=True)
class SplitOptions:
    keep_content: bool = False
    opt_out_keywords: frozenset[str] = frozenset()


class Context:
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
        metadata = metadata if isinstance(metadata, dict) else {}
        self.phone_number_id = text(metadata.get("phone_number_id"))
        self.display_number = text(metadata.get("display_phone_number"))
        contacts = value.get("contacts")
        self.contacts = (
            [c for c in contacts if isinstance(c, dict)] if isinstance(contacts, list) else []
        )

    # -- users and keys ------------------------------------------------------------------

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
            if text(contact.get(by)) == value:
                return text(contact.get(want))
        return None

    def _sole_contact(self) -> UserRef | None:
        """The user of a change whose one ``contacts[]`` entry is the only name it gives."""
        if len(self.contacts) != 1:
            return None
        return self.user(text(self.contacts[0].get("wa_id")), text(self.contacts[0].get("user_id")))

    def group_key(self, group_id: str) -> str:
        """A group's conversation key: the window is the group's, never a participant's."""
        return group_conversation_key(str(self.phone_number_id), group_id)

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

    # -- messages, statuses, preferences, errors -------------------------------------------

    def message(self, item: dict[str, Any]) -> WebhookEvent:
        """An inbound message; in a group, the participant's message to the whole group."""
        wamid = required(item, "id")
        msg_type = text(item.get("type")) or "unknown"
        body = item.get(msg_type)
        user = self.user(text(item.get("from")), text(item.get("from_user_id")))
        if user is None and msg_type == "system" and isinstance(body, dict):
            user = self.user(text(body.get("customer")), None)  # the old id, in older versions
        if user is None:
            raise Skip("message has neither from nor from_user_id")
        data: dict[str, Any] = {"wamid": wamid, "type": msg_type}
        key: str | None = None
        group = text(item.get("group_id"))
        if group:
            data["group_id"] = group
            key = self.group_key(group)
        context = item.get("context")
        if isinstance(context, dict) and context.get("id"):
            data["context_id"] = text(context.get("id"))
        referral = item.get("referral")
        if isinstance(referral, dict):
            data["referral"] = {
                k: text(referral.get(k))
                for k in ("source_type", "source_id", "ctwa_clid")
                if referral.get(k) is not None
            }
        errors = error_list(item.get("errors"))
        if errors:
            data["errors"] = errors
        data.update(type_metadata(msg_type, body))
        keyword = opt_out_keyword(msg_type, item, self.options.opt_out_keywords)
        if keyword:
            data["opt_out_keyword"] = keyword
        if self.options.keep_content and isinstance(body, dict):
            data["content"] = body
        return self._event(
            "message",
            f"message:{self.phone_number_id}:{wamid}",
            user,
            timestamp_of(item),
            data,
            key=key,
        )

    def status(self, item: dict[str, Any]) -> WebhookEvent:
        """A status of an outbound message; in a group, its status for one participant."""
        wamid = required(item, "id")
        status = required(item, "status")
        data: dict[str, Any] = {"wamid": wamid, "status": status}
        event_id = f"status:{self.phone_number_id}:{wamid}:{status}"
        key: str | None = None
        if item.get("recipient_type") == "group":
            group = required(item, "recipient_id")
            # Meta's group pages spell the participant's number both ways
            phone = text(item.get("recipient_participant_id")) or text(
                item.get("participant_recipient_id")
            )
            bsuid = text(item.get("recipient_participant_user_id"))
            user = self.user(phone, bsuid)
            data.update(recipient_type="group", group_id=group)
            key = self.group_key(group)
            # the id the status itself names, so every status of one delivery agrees
            participant = bsuid or phone
            if participant:
                data["participant"] = participant
                event_id = f"status:{self.phone_number_id}:{wamid}:{participant}:{status}"
        else:
            user = self.user(text(item.get("recipient_id")), text(item.get("recipient_user_id")))
            if user is None:
                raise Skip("status has neither recipient_id nor recipient_user_id")
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
                conv["id"] = text(conversation["id"])
            if conversation.get("expiration_timestamp") is not None:
                conv["expiration_timestamp"] = to_timestamp(
                    conversation["expiration_timestamp"], "conversation.expiration_timestamp"
                )
            origin = conversation.get("origin")
            if isinstance(origin, dict) and origin.get("type") is not None:
                conv["origin_type"] = text(origin["type"])
            data["conversation"] = conv
        errors = error_list(item.get("errors"))
        if errors:
            data["errors"] = errors
        return self._event("status", event_id, user, timestamp_of(item), data, key=key)

    def preference(self, item: dict[str, Any]) -> WebhookEvent:
        user = self.user(text(item.get("wa_id")), text(item.get("user_id")))
        if user is None:
            raise Skip("preference has neither wa_id nor user_id")
        value = required(item, "value")
        category = text(item.get("category")) or "unknown"
        timestamp = timestamp_of(item)
        data = {"category": category, "value": value}
        event_id = (
            f"user_preference:{self.phone_number_id}:{user.key}:{category}:{value}:{timestamp}"
        )
        return self._event("user_preference", event_id, user, timestamp, data)

    def value_error(self, item: dict[str, Any]) -> WebhookEvent:
        errors = error_list([item])
        if not errors:
            raise Skip("error without a code")
        return self._event(
            "error",
            f"error:{self.phone_number_id}:{errors[0]['code']}:{digest(item)}",
            None,
            optional_timestamp(item),
            {"errors": errors},
            key=self.waba_id,
        )

    # -- calls -----------------------------------------------------------------------------

    def call(self, item: dict[str, Any]) -> WebhookEvent:
        """A call event (``connect``, ``terminate`` …): who, which way, when; never the session.

        The user is the caller of a user-initiated call (``from`` / ``from_user_id``) and the
        callee of a business-initiated one (``to`` / ``to_user_id``): there ``from`` is the
        business's own number.
        """
        call_id = required(item, "id")
        event = required(item, "event")
        direction = text(item.get("direction"))
        business_called = direction == "BUSINESS_INITIATED" or (
            direction is None and text(item.get("from")) == self.display_number
        )
        side = "to" if business_called else "from"
        user = self.user(text(item.get(side)), text(item.get(f"{side}_user_id")))
        user = user or self._sole_contact()
        if user is None:
            raise Skip(f"call has neither {side} nor {side}_user_id")
        data: dict[str, Any] = {"call_id": call_id, "event": event, "direction": direction}
        return self._call_event(call_id, event, user, item, data)

    def call_status(self, item: dict[str, Any]) -> WebhookEvent:
        """A status of a business-initiated call (``RINGING``, ``ACCEPTED``, ``REJECTED``), from
        ``value.statuses[]`` of the ``calls`` field; Meta sends these for business-initiated
        calls only."""
        call_id = required(item, "id")
        status = required(item, "status")
        user = self.user(text(item.get("recipient_id")), text(item.get("recipient_user_id")))
        user = user or self._sole_contact()
        if user is None:
            raise Skip("call status has neither recipient_id nor recipient_user_id")
        direction = text(item.get("direction")) or "BUSINESS_INITIATED"
        data: dict[str, Any] = {"call_id": call_id, "event": "status", "direction": direction}
        return self._call_event(call_id, f"status:{status}", user, item, data)

    def _call_event(
        self, call_id: str, id_tail: str, user: UserRef, item: dict[str, Any], data: dict[str, Any]
    ) -> WebhookEvent:
        status = text(item.get("status"))
        if status:
            data["status"] = status
        errors = error_list(item.get("errors"))
        if errors:
            data["errors"] = errors
        return self._event(
            "call",
            f"call:{self.phone_number_id}:{call_id}:{id_tail}",
            user,
            timestamp_of(item),
            data,
        )

    # -- everything else -------------------------------------------------------------------

    def other_change(self, entry: dict[str, Any], *, content: bool | None = None) -> WebhookEvent:
        """Any other subscription field (account, template, quality updates …), kept whole
        unless it carries message content (``content``; by default: the content fields)."""
        if content is None:
            content = self.field in CONTENT_FIELDS
        if content and not self.options.keep_content:
            data: dict[str, Any] = {"value_keys": sorted(self.value)}
        else:
            data = {"value": self.value}
        timestamp = (
            to_timestamp(entry.get("time"), "time") if entry.get("time") is not None else None
        )
        return self._event(
            "change",
            f"change:{self.waba_id}:{self.field}:{timestamp}:{digest(self.value)}",
            None,
            timestamp,
            data,
            key=self.waba_id,
        )


Reader = Callable[[Context, dict[str, Any]], WebhookEvent]
_MESSAGE_LISTS: tuple[tuple[str, Reader], ...] = (
    ("messages", Context.message),
    ("statuses", Context.status),
    ("user_preferences", Context.preference),
    ("errors", Context.value_error),
)
#: per subscription field whose items become events of their own: (value list, reader)
ITEM_READERS: dict[str, tuple[tuple[str, Reader], ...]] = {
    "messages": _MESSAGE_LISTS,
    "user_preferences": _MESSAGE_LISTS,
    # Meta Business Agent holds the chat: the same items as ``messages``, on another field
    "standby": _MESSAGE_LISTS,
    "calls": (
        ("calls", Context.call),
        ("statuses", Context.call_status),
        ("errors", Context.value_error),
    ),
}
