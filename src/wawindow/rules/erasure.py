"""Erasure of a person from a conversation: what is forgotten, and what stays.

A person erased up to Meta's time ``erased`` keeps no fact of that time or before (messages,
calls, statuses, opt-out decisions, referrals, the ledger and the billed memory), nor what
was published of those facts, nor their ids; the counts stay (aggregates hold no personal
data). Facts after that time are a new contact and are kept. The state that remains is a
tombstone: older events, late or replayed, are ignored by :func:`wawindow.rules.engine.apply`.
"""

from __future__ import annotations

from wawindow.rules.state import Message, State, event_digest


def forget(s: State) -> None:
    """Drop the facts and marks of ``s`` up to ``s.erased``, and which keys were merged into
    it (their ids are the person's). What came after ``s.erased`` stays, so forgetting
    again with the same ``s.erased`` changes nothing else."""
    cut = s.erased
    if not cut:
        return
    s.inbound = [t for t in s.inbound if t > cut]
    s.cuts = [t for t in s.cuts if t > cut]
    s.referrals = [t for t in s.referrals if t > cut]
    gone = {w for w, m in s.messages.items() if _began(m) <= cut}
    billed = {d for d, delivered in s.billed.items() if delivered <= cut}
    s.erased_messages = sorted({*s.erased_messages, *(event_digest(w) for w in gone), *billed})
    s.messages = {w: m for w, m in s.messages.items() if w not in gone}
    s.billed = {d: delivered for d, delivered in s.billed.items() if d not in billed}
    s.linked = {}
    s.decisions = {k: d for k, d in s.decisions.items() if d.at > cut}
    s.windows = {o: w for o, w in s.windows.items() if o > cut}
    s.entry_points = {o: e for o, e in s.entry_points.items() if o > cut}
    s.conversations = {k: c for k, c in s.conversations.items() if c.opened > cut}
    s.opt_outs = {k: v for k, v in s.opt_outs.items() if k in s.decisions}
    s.disagreements = [w for w in s.disagreements if w in s.messages]
    if not (s.inbound or s.messages or s.decisions):
        s.user_id = s.wa_id = None


def _began(m: Message) -> int:
    """When a business message is first known to have been sent (0: no time known)."""
    times = [t for t in (m.first, m.delivered) if t is not None]
    return min(times) if times else 0
