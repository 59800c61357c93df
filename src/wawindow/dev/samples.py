"""Realistic webhook bodies, built the way Meta shapes them.

Used by the tests, the benchmarks and the demo set. Every builder returns plain dicts; wrap
changes with :func:`body` and sign the encoded bytes with
:func:`wawindow.ingest.signature.sign`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"


def body(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    """One POST body: a single entry (one WABA) holding ``changes``."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": list(changes)}],
    }


def encode(value: dict[str, Any]) -> bytes:
    """Bytes as Meta sends them: compact JSON with non-ASCII escaped as ``\\uXXXX``."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def messages_change(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    field: str = "messages",
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"value": value, "field": field}


def standby_change(
    *,
    messages: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    message_echoes: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """A ``standby`` change: what Meta sends while Meta Business Agent holds the chat, with the
    items of a ``messages`` change, and the agent's own replies as ``message_echoes``."""
    change = messages_change(
        messages=messages,
        statuses=statuses,
        contacts=contacts,
        phone_number_id=phone_number_id,
        field="standby",
    )
    if message_echoes is not None:
        change["value"]["message_echoes"] = message_echoes
    return change


def message_echo(
    wamid: str, timestamp: int, text: str = "Yes, in blue and green.", *, to: str = "16505551234"
) -> dict[str, Any]:
    """An outbound message echoed back (the shape of Meta's ``smb_message_echoes`` items)."""
    return {
        "from": DISPLAY_NUMBER,
        "to": to,
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": text},
    }


def contact(
    wa_id: str | None = None, user_id: str | None = None, name: str = "Sheena Nelson"
) -> dict[str, Any]:
    out: dict[str, Any] = {"profile": {"name": name}}
    if wa_id:
        out["wa_id"] = wa_id
    if user_id:
        out["user_id"] = user_id
    return out


def text_message(
    wamid: str,
    timestamp: int,
    text: str = "Does it come in another color?",
    *,
    wa_id: str | None = "16505551234",
    user_id: str | None = None,
    referral: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": text},
    }
    if wa_id:
        out["from"] = wa_id
    if user_id:
        out["from_user_id"] = user_id
    if referral:
        out["referral"] = referral
    return out


def ad_referral() -> dict[str, Any]:
    return {
        "source_url": "https://fb.me/example",
        "source_id": "120226305854810726",
        "source_type": "ad",
        "body": "Summer Succulents are here!",
        "headline": "Chat with us",
        "media_type": "image",
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7Jw",
    }


def status(
    wamid: str,
    state: str,
    timestamp: int,
    *,
    wa_id: str | None = "16505551234",
    user_id: str | None = None,
    pricing: dict[str, Any] | None = None,
    conversation: dict[str, Any] | None = None,
    error_code: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": wamid, "status": state, "timestamp": str(timestamp)}
    if wa_id:
        out["recipient_id"] = wa_id
    if user_id:
        out["recipient_user_id"] = user_id
    if pricing is not None:
        out["pricing"] = pricing
    if conversation is not None:
        out["conversation"] = conversation
    if error_code is not None:
        out["errors"] = [
            {"code": error_code, "title": f"error {error_code}", "message": f"error {error_code}"}
        ]
    return out


def number_change(
    wamid: str,
    timestamp: int,
    old_wa_id: str | None,
    new_wa_id: str | None,
    *,
    old_user_id: str | None = None,
    new_user_id: str | None = None,
) -> dict[str, Any]:
    """The system message Meta sends when a user changes their number: the new ``wa_id`` and,
    since 2026, the new BSUID (``user_id``). ``from`` is the old number, empty without one."""
    system: dict[str, Any] = {
        "body": f"User Sheena Nelson changed from {old_wa_id or old_user_id} to {new_wa_id}",
        "type": "user_changed_number",
    }
    if new_wa_id:
        system["wa_id"] = new_wa_id
    if new_user_id:
        system["user_id"] = new_user_id
    return _system_message(wamid, timestamp, old_wa_id, old_user_id, system)


def user_id_change(
    wamid: str,
    timestamp: int,
    old_user_id: str | None,
    new_user_id: str,
    *,
    old_wa_id: str | None = None,
) -> dict[str, Any]:
    """The system message of type ``user_changed_user_id``: a new BSUID only."""
    system = {
        "body": f"User Sheena Nelson changed from {old_user_id} to {new_user_id}",
        "user_id": new_user_id,
        "type": "user_changed_user_id",
    }
    return _system_message(wamid, timestamp, old_wa_id, old_user_id, system)


def _system_message(
    wamid: str,
    timestamp: int,
    old_wa_id: str | None,
    old_user_id: str | None,
    system: dict[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {"from": old_wa_id or "", "id": wamid, "timestamp": str(timestamp)}
    if old_user_id:
        out["from_user_id"] = old_user_id
    out.update(type="system", system=system)
    return out


# -- groups (Groups API) ----------------------------------------------------------------------


def group_message(
    wamid: str,
    timestamp: int,
    group_id: str,
    text: str = "What does everyone think about this?",
    *,
    wa_id: str | None = "16505551234",
    user_id: str | None = None,
) -> dict[str, Any]:
    """A participant's text to a group: ``from`` / ``from_user_id`` name the participant."""
    out = text_message(wamid, timestamp, text, wa_id=wa_id, user_id=user_id)
    out["group_id"] = group_id
    return out


def group_status(
    wamid: str,
    state: str,
    timestamp: int,
    group_id: str,
    *,
    participant_wa_id: str | None = "16505551234",
    participant_user_id: str | None = None,
    pricing: dict[str, Any] | None = None,
    error_code: int | None = None,
) -> dict[str, Any]:
    """The status of a group message for one participant (Meta sends one per participant)."""
    out = status(wamid, state, timestamp, wa_id=group_id, pricing=pricing, error_code=error_code)
    out["recipient_type"] = "group"
    if participant_wa_id:
        out["recipient_participant_id"] = participant_wa_id
    if participant_user_id:
        out["recipient_participant_user_id"] = participant_user_id
    return out


# -- calls (Calling API) ----------------------------------------------------------------------


def calls_change(
    *,
    calls: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    contacts: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    """A ``calls`` change: call events in ``calls[]``, business-initiated call statuses in
    ``statuses[]``, value-level ``errors[]``."""
    change = messages_change(
        statuses=statuses, contacts=contacts, phone_number_id=phone_number_id, field="calls"
    )
    if calls is not None:
        change["value"]["calls"] = calls
    if errors is not None:
        change["value"]["errors"] = errors
    return change


def call(
    call_id: str,
    event: str,
    timestamp: int,
    *,
    direction: str = "USER_INITIATED",
    wa_id: str | None = "16505551234",
    user_id: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """One ``calls[]`` item. The user is the caller (``from``) of a user-initiated call and the
    callee (``to``) of a business-initiated one; a ``connect`` carries the SDP session, a
    ``terminate`` its status, times and duration."""
    user_side, business_side = (
        ("to", "from") if direction == "BUSINESS_INITIATED" else ("from", "to")
    )
    out: dict[str, Any] = {
        "id": call_id,
        business_side: DISPLAY_NUMBER,
        "event": event,
        "timestamp": str(timestamp),
        "direction": direction,
    }
    if wa_id:
        out[user_side] = wa_id
    if user_id:
        out[f"{user_side}_user_id"] = user_id
    if event == "connect":
        sdp_type = "answer" if direction == "BUSINESS_INITIATED" else "offer"
        out["session"] = {"sdp_type": sdp_type, "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4"}
    if status is not None:
        out["status"] = status
    if event == "terminate":
        out.update(start_time=str(timestamp - 120), end_time=str(timestamp), duration=120)
    return out


def call_status(
    call_id: str,
    state: str,
    timestamp: int,
    *,
    wa_id: str | None = "16505551234",
    user_id: str | None = None,
) -> dict[str, Any]:
    """A status of a business-initiated call (``RINGING``, ``ACCEPTED``, ``REJECTED``)."""
    out: dict[str, Any] = {
        "id": call_id,
        "timestamp": str(timestamp),
        "type": "call",
        "status": state,
        "biz_opaque_callback_data": "tracker-42",
    }
    if wa_id:
        out["recipient_id"] = wa_id
    if user_id:
        out["recipient_user_id"] = user_id
    return out


def pmp_pricing(category: str = "marketing", kind: str = "regular") -> dict[str, Any]:
    return {
        "billable": kind == "regular",
        "pricing_model": "PMP",
        "type": kind,
        "category": category,
    }


def preference(
    wa_id: str, value: str, timestamp: int, phone_number_id: str = PHONE_NUMBER_ID
) -> dict[str, Any]:
    return {
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": DISPLAY_NUMBER,
                "phone_number_id": phone_number_id,
            },
            "contacts": [{"wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": f"User requested to {value} marketing messages",
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": timestamp,
                }
            ],
        },
        "field": "user_preferences",
    }


def status_batch(first: int, count: int, timestamp: int, *, users: int = 50) -> dict[str, Any]:
    """A body with ``count`` statuses of outbound messages to ``users`` different users: the
    shape Meta batches delivery receipts in."""
    statuses = [
        status(
            f"wamid.bench{first + i:012d}",
            ("sent", "delivered", "read")[i % 3],
            timestamp + i,
            wa_id=f"1650555{(first + i) % users:04d}",
            pricing=pmp_pricing("utility") if i % 3 == 0 else None,
        )
        for i in range(count)
    ]
    return body(messages_change(statuses=statuses))


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
