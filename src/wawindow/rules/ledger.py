"""The per-message pricing ledger: Meta's billing truth since 1 Jul 2025.

- Per ``wamid`` (per participant in a group) the status only moves forward: ``sent <
  delivered < read < played``; ``failed`` is terminal. A late ``sent`` after ``read`` changes
  nothing but may still carry the pricing the ledger needs.
- A message is counted once, as delivered, at its earliest ``delivered``, ``read`` or
  ``played`` status, under the pricing seen on any of its statuses, whatever order they came
  in. Billability comes from ``pricing.type`` (``regular`` is billed, any ``free_*`` is not),
  never from window state; categories and types are open sets.
- When two statuses carry different pricing, the one of the earliest status wins (the
  ``sent``'s over the ``delivered``'s), so the answer does not depend on arrival order.
- A message already counted is remembered for 31 days after its delivery
  (``Rules.billed_memory_s``): a read receipt that comes days later never counts it again.
- A message that only ever fails is not counted.
"""

from __future__ import annotations

from typing import Any

from wawindow.contracts import TIMESTAMPS, text
from wawindow.rules.state import Message

RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 9}
DELIVERED = frozenset({"delivered", "read", "played"})
FAILED = 9
TEMPLATE_CATEGORIES = frozenset(
    {
        "marketing", "marketing_lite", "utility", "authentication",
        "authentication-international", "authentication_international",
    }
)  # fmt: skip


def billable(ptype: str) -> str:
    if ptype == "regular":
        return "true"
    if ptype.startswith("free_"):
        return "false"
    return "unknown"


def record_status(m: Message, status: str, ts: int, data: dict[str, Any]) -> bool:
    """Fold one status into the message's record; True when it came out of order."""
    rank = RANK.get(status, 0)
    late = 0 < rank < m.rank
    if rank > m.rank and m.rank != FAILED:
        m.rank = rank
    if status != "failed":
        m.first = ts if m.first is None else min(m.first, ts)
    if status in DELIVERED:
        m.delivered = ts if m.delivered is None else min(m.delivered, ts)
    pricing = data.get("pricing")
    if isinstance(pricing, dict):
        if m.pricing_rank is None or rank < m.pricing_rank:
            m.category = text(pricing.get("category"))
            m.ptype = text(pricing.get("type"))
            m.pricing_rank = rank
        if pricing.get("pricing_model") == "CBP":
            m.cbp = True
        if pricing.get("type") == "free_entry_point":
            m.meta_entry_point = True
    conversation = data.get("conversation")
    if isinstance(conversation, dict):
        if m.meta_rank is None or rank < m.meta_rank:
            m.origin = text(conversation.get("origin_type")) or m.origin
            m.meta_id = text(conversation.get("id")) or m.meta_id
            expires = conversation.get("expiration_timestamp")
            m.meta_expires = (
                expires if type(expires) is int and expires in TIMESTAMPS else m.meta_expires
            )
            m.meta_rank = rank
        if conversation.get("origin_type") == "referral_conversion":
            m.meta_entry_point = True
    return late


def counted_as(m: Message) -> list[Any] | None:
    """``[delivered, category, type, billable]``: how the message counts, or None when it
    was never delivered."""
    if m.delivered is None:
        return None
    category, ptype = m.category or "unknown", m.ptype or "unknown"
    return [m.delivered, category, ptype, billable(ptype) if m.ptype else "unknown"]
