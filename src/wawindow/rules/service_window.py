"""The customer service window, as intervals derived from when the user wrote or called.

- Every inbound user message (any type but ``system``) and every user-initiated call opens or
  refreshes the window: it ends 24 hours after the latest of them.
- So the windows of a conversation are the chains of user activity in which each message
  comes less than 24 hours after the one before; a message at or after the end starts a new
  window. A late, older message therefore lands in the window of its own time: it extends
  that window, joins two, or is a window of its own, and never shortens one.
- A ``failed`` status with error 131047 at time ``f`` is Meta saying the window was closed at
  ``f``: the window that the tracker thought open at ``f`` (its last message before ``f``)
  ends at ``f``, and a user message after ``f`` starts a new one. A failure older than the
  user's last message therefore never closes the window that message opened.

Derived from the facts alone, so any arrival order of the same webhooks gives the same
windows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from wawindow.contracts import DAY

#: a service window ends 24 hours after the user's latest message or call
CSW_SECONDS = DAY


@dataclass(frozen=True, slots=True)
class Window:
    opened: int  # the first message of the chain
    last: int  # the last message of the chain
    expires: int  # last + 24 h, or the 131047 failure that ended it
    reason: str  # how it ends: "expired" or "meta_131047"


def _cut_between(cuts: Sequence[int], after: int, before: int) -> int | None:
    """The earliest 131047 failure in ``(after, before)``."""
    i = bisect.bisect_right(cuts, after)
    return cuts[i] if i < len(cuts) and cuts[i] < before else None


def windows(inbound: Sequence[int], cuts: Sequence[int]) -> list[Window]:
    """The service windows, oldest first, of sorted user activity and 131047 failures."""
    out: list[Window] = []
    opened = last = None
    for ts in inbound:
        if last is not None and opened is not None:
            if ts < last + CSW_SECONDS and _cut_between(cuts, last, ts) is None:
                last = ts
                continue
            out.append(_ended(opened, last, cuts))
        opened = last = ts
    if opened is not None and last is not None:
        out.append(_ended(opened, last, cuts))
    return out


def _ended(opened: int, last: int, cuts: Sequence[int]) -> Window:
    cut = _cut_between(cuts, last, last + CSW_SECONDS)
    if cut is not None:
        return Window(opened, last, cut, "meta_131047")
    return Window(opened, last, last + CSW_SECONDS, "expired")


def window_at(ws: Sequence[Window], ts: int) -> Window | None:
    """The window open at Meta's time ``ts``, if any."""
    for w in ws:
        if w.opened <= ts < w.expires:
            return w
    return None


def add(timestamps: list[int], ts: int) -> bool:
    """Insert ``ts`` into a sorted list of distinct timestamps; False if it was there."""
    i = bisect.bisect_left(timestamps, ts)
    if i < len(timestamps) and timestamps[i] == ts:
        return False
    timestamps.insert(i, ts)
    return True


def compact(inbound: list[int], cuts: Sequence[int], older_than: int) -> list[int]:
    """Drop the user activity older than ``older_than`` that no window depends on: whole
    windows that ended before it, and inside a window a message between two others less than
    24 hours apart with no failure between them (the chain holds without it). A window that
    ends exactly at ``older_than`` spans nothing there (windows are half-open): it goes too,
    as prune drops its published mark."""
    kept: list[int] = []
    for i, ts in enumerate(inbound):
        if ts < older_than and kept and i + 1 < len(inbound):
            nxt = inbound[i + 1]
            if nxt - kept[-1] < CSW_SECONDS and _cut_between(cuts, kept[-1], nxt) is None:
                continue
        kept.append(ts)
    ended = [w for w in windows(kept, cuts) if w.expires <= older_than]
    if ended:
        last_end = ended[-1].last
        kept = [ts for ts in kept if ts > last_end]
    return kept
