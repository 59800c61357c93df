"""Realistic webhook bodies, built the way Meta shapes them.

Used by the tests, the benchmarks and the demo set. Every builder returns plain dicts; wrap
changes with :func:`body` and sign the encoded bytes with
:func:`wawindow.webhook.signature.sign`.
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
    return {"value": value, "field": "messages"}


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


def number_change(wamid: str, timestamp: int, old_wa_id: str, new_wa_id: str) -> dict[str, Any]:
    """The system message Meta sends when a user changes their number."""
    return {
        "from": old_wa_id,
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "system",
        "system": {"body": "changed", "wa_id": new_wa_id, "type": "user_changed_number"},
    }


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
