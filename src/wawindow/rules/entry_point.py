"""The free entry point window (72 hours, configurable).

- A user who arrives from a Click-to-WhatsApp ad or a Page call-to-action sends an inbound
  message with a ``referral``. The first business message *sent* within 24 hours after that
  message opens the window, at its sending (its ``sent`` status, or the earliest status known
  for it); a message sent before the referral never does.
- Meta's own word opens it too: a status with ``pricing.type: free_entry_point`` or
  ``conversation.origin.type: referral_conversion``; Meta's ``expiration_timestamp``, when
  given, is the authoritative end (``source: meta``).
- A referral opens at most one window; inside the window everything the business sends is
  free, and it holds one ``referral_conversion`` conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wawindow.rules.service_window import CSW_SECONDS
from wawindow.rules.state import Message

#: how long after a referral's message the business may reply to open the window: the
#: service window that message opened
REPLY_WITHIN = CSW_SECONDS


@dataclass(frozen=True, slots=True)
class EntryPoint:
    opened: int
    expires: int
    source: str  # "derived" or "meta"
    conversation_id: str | None = None


def entry_points(
    referrals: Sequence[int], messages: dict[str, Message], length: int
) -> list[EntryPoint]:
    """The free entry point windows, oldest first."""
    sent = sorted((m.first, wamid, m) for wamid, m in messages.items() if m.first is not None)
    out: list[EntryPoint] = []
    for at, _, m in sent:
        current = out[-1] if out else None
        if current is not None and current.opened <= at < current.expires:
            if m.meta_entry_point and m.meta_expires is not None and current.source != "meta":
                out[-1] = EntryPoint(current.opened, m.meta_expires, "meta", m.meta_id)
            continue
        if m.meta_entry_point:
            expires = m.meta_expires or at + length
            source = "meta" if m.meta_expires is not None else "derived"
            out.append(EntryPoint(at, expires, source, m.meta_id if m.meta_expires else None))
            continue
        since = current.opened if current is not None else None
        if any((since is None or r > since) and r <= at <= r + REPLY_WITHIN for r in referrals):
            out.append(EntryPoint(at, at + length, "derived"))
    return out
