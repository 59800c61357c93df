"""One user, one state, whichever ids the webhooks name them by.

- A user may carry a business-scoped id (BSUID, ``user_id``) and/or a phone-based ``wa_id``;
  the tracker keys them by the BSUID when it knows one, else by the ``wa_id``. An event that
  names both links the ``wa_id`` key to the BSUID key.
- ``user_changed_number`` (a new ``wa_id`` and, since the BSUID is regenerated with the
  number, a new ``user_id``) and ``user_changed_user_id`` (a new BSUID only) move the user's
  whole state to the new ids; the old keys point at the new one, so a chain of changes ends on
  one user.
- Linking merges the facts of both keys and what was published of them (see ``merge``); the
  rules then derive the user's windows from the merged facts as from any others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wawindow.contracts import EventKind, Metric, text
from wawindow.keys import conversation_key
from wawindow.rules.erasure import forget
from wawindow.rules.service_window import add
from wawindow.rules.state import State
from wawindow.rules.transitions import Changes

CHANGES_OF_ID = ("user_changed_number", "user_changed_user_id")


def links_of(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The pairs of conversation keys an event shows to be one user, ``(old, current)``."""
    number = event.get("phone_number_id")
    if not isinstance(number, str) or not number:
        return []
    user: Any = event.get("user") or {}
    data: Any = event.get("data") or {}
    if not isinstance(user, dict) or not isinstance(data, dict):
        return []
    key = event.get("key")
    if data.get("group_id"):
        return []  # a participant's ids name no conversation of the group's
    pairs: list[tuple[str, str]] = []
    user_id, wa_id = text(user.get("user_id")), text(user.get("wa_id"))
    system = data.get("system") if event.get("kind") == EventKind.MESSAGE else None
    if isinstance(system, dict) and system.get("type") in CHANGES_OF_ID:
        new_user_id, new_wa_id = text(system.get("user_id")), text(system.get("wa_id"))
        if system.get("type") == "user_changed_user_id":
            new_wa_id = new_wa_id or wa_id  # the number stays
        new = new_user_id or new_wa_id
        if not new:
            return []
        target = conversation_key(number, new)
        for old in (key, user_id and conversation_key(number, user_id),
                    wa_id and conversation_key(number, wa_id)):  # fmt: skip
            if isinstance(old, str) and old != target:
                pairs.append((old, target))
        if new_user_id and new_wa_id:
            pairs.append((conversation_key(number, new_wa_id), target))
        return list(dict.fromkeys(pairs))
    if user_id and wa_id:
        pairs.append((conversation_key(number, wa_id), conversation_key(number, user_id)))
    return pairs


def merge(target: State, source: State, changes: Changes) -> State:
    """The target's state with the source's folded in. What both had published and counted
    under the same identity is counted once (the double count is taken back)."""
    t = target
    t.waba_id = t.waba_id or source.waba_id
    t.user_id = t.user_id or source.user_id
    t.wa_id = t.wa_id or source.wa_id
    for ts in source.inbound:
        add(t.inbound, ts)
    for ts in source.cuts:
        add(t.cuts, ts)
    for ts in source.referrals:
        add(t.referrals, ts)
    for wamid, m in source.messages.items():
        mine = t.messages.get(wamid)
        if mine is None:
            t.messages[wamid] = m
        elif m.counted is not None:
            changes.count(m.counted[0], Metric.MESSAGES_DELIVERED, tuple(m.counted[1:]), -1)
    for wamid, at in source.billed.items():
        t.billed.setdefault(wamid, at)
    for name, d in source.decisions.items():
        mine_d = t.decisions.get(name)
        if mine_d is None or (d.at, d.value) > (mine_d.at, mine_d.value):
            t.decisions[name] = d
    for digest, at in source.applied.items():
        t.applied.setdefault(digest, at)
    for opened, w in source.windows.items():
        if opened in t.windows:
            changes.count(opened, Metric.SERVICE_WINDOWS_OPENED, delta=-1)
            if w.corrected_at:
                changes.count(w.corrected_at, Metric.CSW_CORRECTIONS, delta=-1)
        else:
            t.windows[opened] = w
    for opened, e in source.entry_points.items():
        if opened in t.entry_points:
            changes.count(opened, Metric.ENTRY_POINT_WINDOWS_OPENED, delta=-1)
        else:
            t.entry_points[opened] = e
    for opener, c in source.conversations.items():
        if opener in t.conversations:
            changes.count(c.opened, Metric.CONVERSATIONS_OPENED, c.dims, -1)
        else:
            t.conversations[opener] = c
    for name, value in source.opt_outs.items():
        t.opt_outs[name] = t.opt_outs.get(name, False) or value
    for wamid in source.disagreements:
        if wamid in t.disagreements and wamid in source.messages:
            delivered_at = source.messages[wamid].delivered
            if delivered_at is not None:
                changes.count(delivered_at, Metric.CONVERSATION_DISAGREEMENTS, delta=-1)
        elif wamid not in t.disagreements:
            t.disagreements.append(wamid)
    t.disagreements.sort()
    t.erased_messages = sorted({*t.erased_messages, *source.erased_messages})
    linked, cut = dict(t.linked), t.erased
    t.erased = max(t.erased, source.erased)
    forget(t)  # the source's facts of before the target's erasure, or the other way round
    if t.erased == cut:  # no erasure newer than the target's: what it merged since stays
        t.linked = linked
    return t
