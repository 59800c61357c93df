"""Read views of conversation state, in the shapes ``docs/api.md`` gives (shared by the CLI
and the HTTP API). ``view_of`` is pure: the rules' derivation of one state at one moment."""

from __future__ import annotations

from typing import Any

from wawindow.engine.cloudevents import iso
from wawindow.engine.people import OnFile
from wawindow.engine.store import WindowStore
from wawindow.kafka.consent_records import Categories
from wawindow.rules import opt_out
from wawindow.rules.consent import Consent
from wawindow.rules.engine import Rules, derive
from wawindow.rules.state import State


def _window(opened: int, expires: int, now: int) -> dict[str, Any]:
    return {"open": expires > now, "opened_at": iso(opened), "expires_at": iso(expires)}


def view_of(state: State, phone_number_id: str, now: int, rules: Rules) -> dict[str, Any] | None:
    """A user's latest service window and entry point window, open conversations and opt-out
    state at wall-clock ``now``; ``None`` for a user the tracker knows nothing of."""
    if not (state.inbound or state.messages or state.decisions or state.billed):
        return None
    ws, eps, convs, _ = derive(state, rules)
    entry_point = None
    if eps:
        entry_point = {**_window(eps[-1].opened, eps[-1].expires, now), "source": eps[-1].source}
    return {
        "waba_id": state.waba_id,
        "phone_number_id": phone_number_id,
        "user": {"user_id": state.user_id, "wa_id": state.wa_id},
        "service_window": _window(ws[-1].opened, ws[-1].expires, now) if ws else None,
        "entry_point_window": entry_point,
        "conversations": [
            {
                "category": c.category,
                "initiator": c.initiator,
                "type": c.type,
                "source": c.source,
                "conversation_id": c.conversation_id,
                "opened_at": iso(c.opened),
                "expires_at": iso(c.expires),
            }
            for c in convs
            if c.opened <= now < c.expires
        ],
        "marketing_opt_out": opt_out.opted_out(state, opt_out.MARKETING),
        "opted_out": opt_out.opted_out(state, opt_out.ALL),
    }


async def window_view(
    store: WindowStore, phone_number_id: str, user: str, now: int
) -> dict[str, Any] | None:
    """A user's view; ``user`` may be a BSUID or a wa_id: a linked id finds the same state."""
    key = f"{phone_number_id}:{user}"
    resolved = (await store.resolve([key]))[key]
    return view_of(await store.conversation(resolved), phone_number_id, now, store.rules)


def consent_view(
    waba_id: str, user: str, on_file: OnFile, categories: Categories
) -> dict[str, Any]:
    """The shape of ``GET /v1/consents/…`` (and ``wawindow consent show``)."""
    consent = Consent.of(on_file.decisions)
    shown: dict[str, Any] = {}
    for category in categories.shown:
        d = consent.deciding(category)
        shown[category] = {
            "state": consent.state(category),
            "at": iso(d.at) if d else None,
            "source": d.source if d else None,
        }
    history = []
    for d in reversed(on_file.decisions):
        item = d.show()
        item["at"] = iso(d.at)
        item["recorded_at"] = iso(d.recorded_at) if d.recorded_at else None
        history.append(item)
    return {
        "waba_id": waba_id,
        "user": user,
        "ids": on_file.ids,
        "categories": shown,
        "history": history,
    }
