"""Conversations, kept as finance's unit by Meta's conversation-based pricing (CBP) rule.

Derived from every delivered business message, in the order of their delivery times:

- A message delivered (its earliest ``delivered`` or ``read``) opens a 24-hour conversation
  unless an open one absorbs it: one of the same category for a template (marketing, utility,
  authentication …), any one for a non-template (service) message.
- Its category is the message's ``pricing.category`` or ``conversation.origin.type``; with
  neither, ``service`` when a service window was open at the delivery, else ``unknown``. A
  category learned later replaces the guess (the count moves, it is not added).
- The initiator is ``user`` when a service window was open at the delivery, else
  ``business``; Meta's historic categories ``user_initiated`` / ``business_initiated`` name it.
- Inside a free entry point window, its ``referral_conversion`` conversation (type
  ``free_entry_point``, initiator ``user``) absorbs everything, and its opening closes the
  other conversations.
- In the CBP era (``pricing_model: CBP``) Meta's conversation id, with its
  ``expiration_timestamp``, is the conversation (``source: meta``); a delivery where Meta and
  the derivation disagree on opening is counted as a disagreement. After 1 Jul 2025 Meta's
  per-message ids are never taken as conversations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wawindow.contracts import DAY
from wawindow.rules.entry_point import EntryPoint
from wawindow.rules.ledger import TEMPLATE_CATEGORIES
from wawindow.rules.service_window import Window, window_at
from wawindow.rules.state import Message

CONVERSATION_SECONDS = DAY  # Meta's conversation: 24 hours from its opening delivery
HISTORIC = {"user_initiated": "user", "business_initiated": "business"}


@dataclass(frozen=True, slots=True)
class Conversation:
    opener: str  # the wamid whose delivery opened it ("fep@<opened>" for an entry point's)
    category: str
    initiator: str
    type: str  # "regular" or "free_entry_point"
    source: str  # "derived" or "meta"
    conversation_id: str | None
    opened: int
    expires: int  # its end: 24 h, Meta's expiration, or when an entry point took over

    @property
    def dims(self) -> tuple[str, str, str, str]:
        return (self.category, self.initiator, self.type, self.source)


def conversations(
    messages: dict[str, Message], windows: Sequence[Window], eps: Sequence[EntryPoint]
) -> tuple[list[Conversation], list[str]]:
    """The conversations, by opening time, and the wamids whose delivery Meta's conversation
    id and the derivation disagree on."""
    out: dict[str, Conversation] = {}
    disagreements: list[str] = []
    steps: list[tuple[int, int, str, Message | EntryPoint]] = [
        (ep.opened, 0, f"fep@{ep.opened}", ep) for ep in eps
    ]
    steps += [(m.delivered, 1, w, m) for w, m in messages.items() if m.delivered is not None]
    open_: dict[str, str] = {}  # category -> opener of the open conversation
    current: EntryPoint | None = None
    for at, _, name, item in sorted(steps, key=lambda s: s[:3]):
        if isinstance(item, EntryPoint):
            for opener in open_.values():
                c = out[opener]
                if c.expires > at:
                    out[opener] = _ends(c, at)
            open_.clear()
            current = item
            out[name] = Conversation(
                name, "referral_conversion", "user", "free_entry_point", item.source,
                item.conversation_id, item.opened, item.expires,
            )  # fmt: skip
            continue
        if current is not None and current.opened <= at < current.expires:
            continue  # the entry point's conversation holds it
        for category, opener in list(open_.items()):
            if out[opener].expires <= at:
                del open_[category]
        category, initiator = _classify(item, windows, at)
        if category == "referral_conversion":
            continue
        meta_id = item.meta_id if item.cbp else None
        if category in TEMPLATE_CATEGORIES:
            absorber = open_.get(category)
        else:
            absorber = next(iter(open_.values()), None)
        if meta_id is not None:
            by_meta = next((o for o in open_.values() if out[o].conversation_id == meta_id), None)
            if (absorber is None) != (by_meta is None):
                disagreements.append(name)
            if by_meta is not None:
                continue
            if category in open_:
                out[open_[category]] = _ends(out[open_[category]], at)
            expires = item.meta_expires or at + CONVERSATION_SECONDS
            source = "meta"
        elif absorber is not None:
            continue
        else:
            expires, source = at + CONVERSATION_SECONDS, "derived"
        out[name] = Conversation(name, category, initiator, "regular", source, meta_id, at, expires)
        open_[category] = name
    return sorted(out.values(), key=lambda c: (c.opened, c.opener)), disagreements


def _classify(m: Message, windows: Sequence[Window], at: int) -> tuple[str, str]:
    in_window = window_at(windows, at) is not None
    category = m.category if m.category not in (None, "unknown") else m.origin
    initiator = "user" if in_window else "business"
    if category in HISTORIC:
        initiator, category = HISTORIC[category], None
    if category is None:
        category = "service" if in_window else "unknown"
    return category, initiator


def _ends(c: Conversation, at: int) -> Conversation:
    return Conversation(
        c.opener, c.category, c.initiator, c.type, c.source, c.conversation_id, c.opened, at
    )
