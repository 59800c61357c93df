"""From the derived truth to what the world is told.

The state keeps, per window, entry point window and conversation, what was published and
counted. Reconciling compares that with the truth derived from the facts at wall-clock time
``now`` and emits exactly the difference:

- new in the truth: ``opened`` (``late: true`` when it had already ended when the tracker
  learned of it), counted;
- a later end: ``extended`` (a window the clock had closed is open again: Meta's timestamps
  show it never lapsed);
- other attributes learned late (a conversation's category or initiator): ``updated``, and
  the count moves from the old dimensions to the new ones: moved, not added;
- gone from the truth (a late message joined two windows, an earlier delivery took over a
  conversation): ``retracted``, and its count is taken back;
- ended on the wall clock: ``closed`` at its true end, once; ``closing_soon`` warnings before
  a service window's end, at the configured offsets.

So the counts always equal what the truth holds, whatever order the facts came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from wawindow.contracts import Metric
from wawindow.contracts import TransitionType as T
from wawindow.rules import ledger, opt_out
from wawindow.rules.conversations import Conversation
from wawindow.rules.entry_point import EntryPoint
from wawindow.rules.published import ConversationMark, EntryPointMark, WindowMark
from wawindow.rules.service_window import Window
from wawindow.rules.state import State
from wawindow.rules.transitions import Changes

_Mark = TypeVar("_Mark", WindowMark, EntryPointMark)


def service_windows(
    s: State, ws: Sequence[Window], now: int, offsets: Sequence[int], out: Changes
) -> None:
    truth = {w.opened: w for w in ws}
    for w in ws:  # a late, earlier message moved a window's start: the same window
        _rekey(s.windows, w.opened, w.last, Metric.SERVICE_WINDOWS_OPENED, out)
    for opened in sorted(set(s.windows) - set(truth)):
        gone = s.windows.pop(opened)
        out.emit(s, T.SERVICE_WINDOW_RETRACTED, (opened, gone.expires), opened,
                 {"opened_at": opened, "expires_at": gone.expires, "reason": "joined"})  # fmt: skip
        out.count(opened, Metric.SERVICE_WINDOWS_OPENED, delta=-1)
        if gone.corrected_at:
            out.count(gone.corrected_at, Metric.CSW_CORRECTIONS, delta=-1)
    for w in ws:
        mark = s.windows.get(w.opened)
        learned = mark is None
        if mark is None:
            mark = s.windows[w.opened] = WindowMark(w.expires)
            out.emit(s, T.SERVICE_WINDOW_OPENED, (w.opened,), w.opened,
                     {"opened_at": w.opened, "expires_at": w.expires,
                      "late": w.expires <= now})  # fmt: skip
            out.count(w.opened, Metric.SERVICE_WINDOWS_OPENED)
        elif w.expires > mark.expires:
            mark.expires, mark.closed, mark.warned = w.expires, False, 0
            out.emit(s, T.SERVICE_WINDOW_EXTENDED, (w.opened, w.expires), w.last,
                     {"opened_at": w.opened, "expires_at": w.expires})  # fmt: skip
        elif w.expires < mark.expires:
            mark.expires = w.expires
        corrected = w.expires if w.reason == "meta_131047" else 0
        if corrected != mark.corrected_at:
            if mark.corrected_at:
                out.count(mark.corrected_at, Metric.CSW_CORRECTIONS, delta=-1)
            if corrected:
                out.count(corrected, Metric.CSW_CORRECTIONS)
            mark.corrected_at = corrected
        if mark.closed:
            continue
        if w.expires <= now:
            mark.closed = True
            out.emit(s, T.SERVICE_WINDOW_CLOSED, (w.opened, w.expires, w.expires), w.expires,
                     {"opened_at": w.opened, "expires_at": w.expires, "closed_at": w.expires,
                      "reason": w.reason, "late": learned})  # fmt: skip
            continue
        for i in range(mark.warned, len(offsets)):
            at = w.expires - offsets[i]
            if now < at:
                break
            out.emit(s, T.SERVICE_WINDOW_CLOSING_SOON, (w.opened, w.expires, offsets[i]), at,
                     {"opened_at": w.opened, "expires_at": w.expires,
                      "seconds_left": w.expires - now, "offset": offsets[i]})  # fmt: skip
            mark.warned = i + 1


def _rekey(marks: dict[int, _Mark], opened: int, until: int, metric: Metric, out: Changes) -> None:
    """Keep a published window as itself when its start moved earlier: its mark (the earliest
    one inside ``[opened, until]``) moves to the new start, and so does its count."""
    if opened in marks:
        return
    inside = [o for o in marks if opened <= o <= until]
    if inside:
        first = min(inside)
        marks[opened] = marks.pop(first)
        out.count(first, metric, delta=-1)
        out.count(opened, metric)


def entry_points(s: State, eps: Sequence[EntryPoint], now: int, out: Changes) -> None:
    truth = {ep.opened: ep for ep in eps}
    for ep in eps:  # an earlier status of the opening message moved its start
        _rekey(s.entry_points, ep.opened, ep.expires - 1, Metric.ENTRY_POINT_WINDOWS_OPENED, out)
    for opened in sorted(set(s.entry_points) - set(truth)):
        gone = s.entry_points.pop(opened)
        data = {"opened_at": opened, "expires_at": gone.expires, "source": gone.source}
        out.emit(s, T.ENTRY_POINT_WINDOW_RETRACTED, (opened, gone.expires), opened, data)
        out.count(opened, Metric.ENTRY_POINT_WINDOWS_OPENED, delta=-1)
    for ep in eps:
        mark = s.entry_points.get(ep.opened)
        if mark is None:
            mark = EntryPointMark(ep.expires, closed=False, source=ep.source)
            s.entry_points[ep.opened] = mark
            data = {"opened_at": ep.opened, "expires_at": ep.expires, "source": ep.source}
            out.emit(s, T.ENTRY_POINT_WINDOW_OPENED, (ep.opened,), ep.opened, data)
            out.count(ep.opened, Metric.ENTRY_POINT_WINDOWS_OPENED)
        elif (mark.expires, mark.source) != (ep.expires, ep.source):
            mark.expires, mark.source = ep.expires, ep.source
            if ep.expires > now:
                mark.closed = False
        if not mark.closed and ep.expires <= now:
            mark.closed = True
            out.emit(s, T.ENTRY_POINT_WINDOW_CLOSED, (ep.opened, ep.expires), ep.expires,
                     {"opened_at": ep.opened, "expires_at": ep.expires, "closed_at": ep.expires,
                      "source": ep.source})  # fmt: skip


def conversation_data(c: ConversationMark, closed_at: int | None = None) -> dict[str, Any]:
    data = {
        "category": c.category, "initiator": c.initiator, "type": c.type, "source": c.source,
        "conversation_id": c.conversation_id, "opened_at": c.opened, "expires_at": c.expires,
    }  # fmt: skip
    if closed_at is not None:
        data["closed_at"] = closed_at
    return data


def conversations(s: State, convs: Sequence[Conversation], now: int, out: Changes) -> None:
    truth = {c.opener: c for c in convs}
    for opener in sorted(set(s.conversations) - set(truth)):
        gone = s.conversations.pop(opener)
        out.emit(s, T.CONVERSATION_RETRACTED, (opener, gone.expires), gone.opened,
                 conversation_data(gone))  # fmt: skip
        out.count(gone.opened, Metric.CONVERSATIONS_OPENED, gone.dims, -1)
    for c in convs:
        now_is = (*c.dims, c.conversation_id, c.opened)  # all it is published as but its end
        mark = s.conversations.get(c.opener)
        if mark is None:
            mark = ConversationMark(*now_is, c.expires)
            s.conversations[c.opener] = mark
            out.emit(s, T.CONVERSATION_OPENED, (c.opener,), c.opened, conversation_data(mark))
            out.count(c.opened, Metric.CONVERSATIONS_OPENED, c.dims)
        elif (*mark.dims, mark.conversation_id, mark.opened) != now_is:
            out.count(mark.opened, Metric.CONVERSATIONS_OPENED, mark.dims, -1)
            out.count(c.opened, Metric.CONVERSATIONS_OPENED, c.dims)
            previous = {"previous_category": mark.category, "previous_initiator": mark.initiator}
            # not only an earlier delivery time
            learned = (*mark.dims, mark.conversation_id) != now_is[:5]
            mark.category, mark.initiator, mark.type, mark.source = c.dims
            mark.conversation_id, mark.opened, mark.expires = c.conversation_id, c.opened, c.expires
            if learned:
                out.emit(s, T.CONVERSATION_UPDATED, (c.opener, *now_is), c.opened,
                         {**conversation_data(mark), **previous})  # fmt: skip
        if mark.expires != c.expires:
            mark.expires = c.expires
            if c.expires > now:
                mark.closed = False
        if not mark.closed and c.expires <= now:
            mark.closed = True
            out.emit(s, T.CONVERSATION_CLOSED, (c.opener, c.expires), c.expires,
                     conversation_data(mark, c.expires))  # fmt: skip


def delivered(s: State, out: Changes) -> None:
    for m in s.messages.values():
        counted = ledger.counted_as(m)
        if counted == m.counted:
            continue
        if m.counted is not None:
            out.count(m.counted[0], Metric.MESSAGES_DELIVERED, tuple(m.counted[1:]), -1)
        if counted is not None:
            out.count(counted[0], Metric.MESSAGES_DELIVERED, tuple(counted[1:]))
        m.counted = counted


def disagreements(s: State, wamids: Sequence[str], out: Changes) -> None:
    now_is, was = set(wamids), set(s.disagreements)
    for wamid in sorted(now_is ^ was):
        at = s.messages[wamid].delivered if wamid in s.messages else None
        if at is not None:
            out.count(at, Metric.CONVERSATION_DISAGREEMENTS, delta=1 if wamid in now_is else -1)
    s.disagreements = sorted(now_is)


def opt_outs(s: State, out: Changes) -> None:
    for name in opt_out.FIELDS:
        value = opt_out.opted_out(s, name)
        if value == s.opt_outs.get(name, False):
            continue
        s.opt_outs[name] = value
        d = s.decisions[name]
        out.emit(s, T.OPT_OUT_CHANGED, (name, str(value).lower(), d.at), d.at,
                 {"marketing_opt_out": opt_out.opted_out(s, opt_out.MARKETING),
                  "opted_out": opt_out.opted_out(s, opt_out.ALL), "reason": d.reason})  # fmt: skip
