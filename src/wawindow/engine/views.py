"""Read views of conversation state, in the shapes of ``interface.md`` (shared by the CLI and,
later, the HTTP API)."""

from __future__ import annotations

from typing import Any

import orjson

from wawindow.engine.cloudevents import iso
from wawindow.engine.store import WindowStore


def _window(
    opened: str | None, expires: str | None, closed: str | None, now: int
) -> dict[str, Any] | None:
    if opened is None or expires is None:
        return None
    return {
        "open": closed != "1" and int(expires) > now,
        "opened_at": iso(int(opened)),
        "expires_at": iso(int(expires)),
    }


async def window_view(
    store: WindowStore, phone_number_id: str, user: str, now: int
) -> dict[str, Any] | None:
    """A user's windows, open conversations and opt-out state; ``None`` for a user the tracker
    has never seen. ``user`` may be a BSUID or a wa_id: a linked id finds the same state."""
    key = f"{phone_number_id}:{user}"
    resolved = (await store.resolve([key]))[key]
    state = await store.conversation(resolved)
    if not any(not field.startswith("s:") for field in state):
        return None
    conversations = []
    for field, raw in sorted(state.items()):
        if not field.startswith("cv:"):
            continue
        c = orjson.loads(raw)
        if int(c["e"]) <= now:
            continue
        conversations.append(
            {
                "category": field[3:],
                "initiator": c.get("i"),
                "type": c.get("t"),
                "source": c.get("src"),
                "conversation_id": c.get("id"),
                "opened_at": iso(int(c["o"])),
                "expires_at": iso(int(c["e"])),
            }
        )
    entry_point = _window(
        state.get("fep_opened"), state.get("fep_expires"), state.get("fep_closed"), now
    )
    if entry_point is not None:
        entry_point["source"] = state.get("fep_src")
    return {
        "waba_id": state.get("waba"),
        "phone_number_id": phone_number_id,
        "user": {"user_id": state.get("user_id"), "wa_id": state.get("wa_id")},
        "service_window": _window(
            state.get("csw_opened"), state.get("csw_expires"), state.get("csw_closed"), now
        ),
        "entry_point_window": entry_point,
        "conversations": conversations,
        "marketing_opt_out": state.get("marketing_opt_out") == "1",
        "opted_out": state.get("opted_out") == "1",
    }
