"""The rules' fast path: :func:`apply` is :func:`wawindow.rules.engine.apply` (the same state,
transitions, counter changes, results, ``due`` and ``keep_until``), without re-deriving a
conversation's whole history for an event that only adds to its end.

The model adds an event's facts to the state, derives every window, entry point and
conversation from all the facts, and publishes the difference with what was published
(``engine._reconcile``). Here the facts are added by the model's own ``_add_facts``, and
what they changed is published by the model's ``_reconcile`` unless the state is *settled*
(what was published is all its facts say at ``now``: reconciling would publish nothing) and
the event is one of these, whose difference is then published alone, in the model's order:

- *a user message or call later than every user message, 131047 failure and delivery*: it
  extends the last service window if it comes before that window's end (its published
  mark), else opens one. No delivery lies in the time the window newly covers, so older
  windows and every conversation stay as they were;
- *a status of a business message* that adds its first sending (no referral in the 24
  hours before it, so it opens no entry point) and/or its first delivery, later than every
  other delivery and entry point, or nothing the conversations read (a read after the
  delivery, a late ``sent``). Such a delivery is the last step of the conversations'
  derivation: it opens a conversation, unless an open one (the published marks say which)
  or the entry point's absorbs it. The ledger counts it as ``publish.delivered`` does;
- *an event that adds no fact the windows read*: a user preference, a status of a message
  counted long ago, a ``system`` message. ``publish.opt_outs`` ends every event, as in the
  model, so an opt-out decision (a keyword, a preference, a 131050) is published.

The rest is the model's: a referral, a 131047 failure, Meta's entry point and CBP-era
conversations, a category learned by a delivered message, an earlier fact than above, a
window or conversation due at once; whole calls on an erased state or negative offsets.

A state is settled after each event, either way; at the start of a call, when nothing of it
is due to be warned or closed, every derived entry point lasts as the rules now say and
``prune`` forgets no fact. That rests on what the model leaves: ``apply``, ``sweep`` and
``merge`` end reconciled; ``erase`` leaves an erased state; a call of repeats only prunes,
and what its prune left unpublished is older than any later cut, so the next call prunes
and publishes through the model. (A change of the rules' code that changes what stored
facts say needs the fast path off until those states are reconciled.)

``prune`` derives whenever a fact is older than the history: in a conversation longer than
that, on every call. On a settled state its cut is that of the published spans, so it is
taken from them, and ``engine.prune`` runs only when a fact is older than the cut. One walk
over the business messages per call finds the oldest fact and the latest delivery (kept up
to date by the fast path, for itself and ``keep_until``). ``tests/test_rules_fast.py`` holds
this module equal to the model, step for step.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wawindow.contracts import EventKind, Metric, Note
from wawindow.contracts import TransitionType as T
from wawindow.rules import engine, ledger, publish
from wawindow.rules.conversations import CONVERSATION_SECONDS, _classify
from wawindow.rules.engine import EventResult, Outcome, Rules
from wawindow.rules.entry_point import REPLY_WITHIN
from wawindow.rules.published import ConversationMark, WindowMark
from wawindow.rules.service_window import CSW_SECONDS, Window
from wawindow.rules.state import Message, State
from wawindow.rules.transitions import Changes


@dataclass(slots=True)
class Stats:
    """How many events each path applied (for tests and benchmarks). With ``verify``, the
    call's knowledge of the messages is checked against a fresh walk after each event the
    fast path applied; what differed is listed in ``stale``."""

    fast: int = 0
    model: int = 0
    verify: bool = False
    stale: list[tuple[int | None, int | None]] = field(default_factory=list)


@dataclass(slots=True)
class _Known:
    """What a call knows of a state's business messages: the latest delivery of any."""

    delivered: int | None


@dataclass(frozen=True, slots=True)
class _Before:
    """The facts an event may change, as they were before it."""

    inbound: int
    cuts: int
    referrals: int
    wamid: str | None = None  # a status's message, as the ledger keys it
    first: int | None = None
    delivered: int | None = None
    classified_by: tuple[str | None, str | None] = (None, None)  # category, origin


def apply(
    state: State,
    key: str,
    events: Sequence[Mapping[str, Any]],
    now: int,
    rules: Rules,
    *,
    stats: Stats | None = None,
) -> Outcome:
    """:func:`wawindow.rules.engine.apply`, faster on a long history (see the module)."""
    offsets = rules.closing_soon_offsets_s
    if state.erased or (offsets and offsets[-1] < 0):
        if stats is not None:
            stats.model += len(events)
        return engine.apply(state, key, events, now, rules)
    changes = engine._changes(key)
    out = Outcome(state)
    oldest, walked = _scan(state, now)
    settled = _prune(state, now, rules, oldest)
    known = walked if settled else None  # what prune forgot is walked again when needed
    due = engine.open_due(state, rules)
    settled = settled and (due is None or due > now) and _entry_points_last(state, rules)
    for ev in events:  # as engine.apply (an erased state went to it whole)
        if not engine.admitted(state, ev, now, out):
            continue
        if settled and known is None:
            known = _scan(state, now)[1]
        before = _before(state, ev) if settled else None
        notes = engine._add_facts(state, ev, changes)
        if (
            before is not None
            and known is not None
            and _publish(state, ev, before, known, now, rules, changes)
        ):
            if stats is not None:
                stats.fast += 1
                if stats.verify and known.delivered != (fresh := _scan(state, now)[1].delivered):
                    stats.stale.append((known.delivered, fresh))
        else:
            counted = len(changes.counters)
            engine._reconcile(state, now, rules, changes)
            if any(
                c.metric == Metric.CONVERSATION_DISAGREEMENTS and c.delta > 0
                for c in changes.counters[counted:]
            ):
                notes = (*notes, Note.DISAGREEMENT)
            settled, known = True, None  # the model published all the facts say
            if stats is not None:
                stats.model += 1
        out.results.append(EventResult(notes=notes))
    out.transitions, out.counters = changes.transitions, changes.counters
    if known is None:
        known = _scan(state, now)[1]
    out.due = engine.next_due(state, rules)
    out.keep_until = engine.keep_until_delivered(state, now, rules, known.delivered)
    return out


def _scan(s: State, now: int) -> tuple[int, _Known]:
    """One walk over the business messages: the oldest fact as ``engine.prune`` reckons it
    (a message by its earliest status, or ``now`` without one), and the latest delivery."""
    heads = [*s.inbound[:1], *s.referrals[:1]]
    oldest = min(heads) if heads else None
    delivered = -1  # timestamps are never negative (TIMESTAMPS)
    for m in s.messages.values():
        began = m.first or m.delivered or now
        if oldest is None or began < oldest:
            oldest = began
        at = m.delivered
        if at is not None and at > delivered:
            delivered = at
    return now if oldest is None else oldest, _Known(None if delivered < 0 else delivered)


def _prune(s: State, now: int, rules: Rules, oldest: int) -> bool:
    """``engine.prune``, without deriving when it would forget no fact: True when it had
    only applied ids and billed messages past their memory to forget.

    Its early exit is decided from the walk already made. Past it, on a state whose marks
    are the truth (published by the model under these rules), its cut is that of the marks'
    spans, and it forgets nothing when no fact and no mark is older than the cut. Facts an
    earlier prune left unpublished (a call of repeats only reconciles nothing) are older
    than its cut, which is never later than this one: those go to the model.
    """
    horizon = now - rules.history_s
    if oldest < horizon:
        cut = _cut(s, horizon) if _entry_points_last(s, rules) else None
        if cut is None or not _nothing_before(s, cut, oldest):
            engine.prune(s, now, rules)
            return False
    # as engine.prune's first two lines, rebuilding the maps only when something goes
    if s.applied and min(s.applied.values()) < horizon:
        s.applied = {d: at for d, at in s.applied.items() if at >= horizon}
    memory = now - rules.billed_memory_s
    if s.billed and min(s.billed.values()) < memory:
        s.billed = {w: at for w, at in s.billed.items() if at >= memory}
    return True


def _cut(s: State, horizon: int) -> int:
    """``engine.prune``'s cut, from the published spans: back from the horizon to a moment
    none spans (whatever order the spans are taken in, the start of the run of overlapping
    spans the horizon is in)."""
    spans = [(o, w.expires) for o, w in s.windows.items()]
    spans += [(o, e.expires) for o, e in s.entry_points.items()]
    spans += [(c.opened, c.expires) for c in s.conversations.values()]
    cut = horizon
    moved = True
    while moved:
        moved = False
        for opened, expires in spans:
            if opened < cut < expires:
                cut, moved = opened, True
    return cut


def _nothing_before(s: State, cut: int, oldest: int) -> bool:
    """Nothing ``engine.prune`` forgets at ``cut`` is there: no user message, referral,
    business message (by its earliest and by its latest status) or 131047 failure is older
    than ``cut`` (see ``service_window.compact``), so neither is a mark (a published window,
    entry point or conversation is never older than the facts it was derived from)."""
    if oldest < cut or (s.cuts and s.cuts[0] < cut):
        return False
    for m in s.messages.values():
        first, at = m.first or 0, m.delivered or 0
        if (first if first > at else at) < cut:
            return False  # only ever failed, or sent and delivered before the cut
    return True


def _entry_points_last(s: State, rules: Rules) -> bool:
    """Every derived entry point window lasts as long as the rules say now: the published
    marks are the truth of these rules, not of an older setting."""
    length = rules.free_entry_point_s
    return all(e.expires == o + length for o, e in s.entry_points.items() if e.source == "derived")


def _before(s: State, ev: Mapping[str, Any]) -> _Before:
    counts = len(s.inbound), len(s.cuts), len(s.referrals)
    if ev["kind"] != EventKind.STATUS:
        return _Before(*counts)
    wamid = engine._wamid(ev["data"])
    m = s.messages.get(wamid)
    if m is None:
        return _Before(*counts, wamid)
    return _Before(*counts, wamid, m.first, m.delivered, (m.category, m.origin))


def _publish(
    s: State,
    ev: Mapping[str, Any],
    b: _Before,
    known: _Known,
    now: int,
    rules: Rules,
    changes: Changes,
) -> bool:
    """Publish what the event's facts changed, as the model's ``_reconcile`` would on a
    settled state; False (and nothing published) when that is not known without it."""
    if len(s.cuts) != b.cuts or len(s.referrals) != b.referrals:
        return False  # a 131047 failure or a referral: the model
    if len(s.inbound) != b.inbound:
        if not _user_wrote(s, ev["timestamp"], known, now, rules, changes):
            return False
    elif b.wamid is not None and not _status(s, b, known, now, changes):
        return False
    publish.opt_outs(s, changes)
    return True


def _user_wrote(s: State, ts: int, known: _Known, now: int, rules: Rules, changes: Changes) -> bool:
    """A user message or call at ``ts``: the last service window extended, or a new one."""
    if s.inbound[-1] != ts or (s.cuts and ts <= s.cuts[-1]):
        return False  # older than a message or a 131047 failure: windows may join or split
    if known.delivered is not None and ts <= known.delivered:
        return False  # a delivery may fall in the time the window now covers
    expires = ts + CSW_SECONDS
    offsets = rules.closing_soon_offsets_s
    if (expires - offsets[0] if offsets else expires) <= now:
        return False  # to be warned or closed at once: the model
    if s.windows:
        opened = max(s.windows)
        mark = s.windows[opened]
        if ts < mark.expires:  # before the last window's end: it goes on (see service_window)
            mark.expires, mark.closed, mark.warned = expires, False, 0
            changes.emit(s, T.SERVICE_WINDOW_EXTENDED, (opened, expires), ts,
                         {"opened_at": opened, "expires_at": expires})  # fmt: skip
            return True
    elif len(s.inbound) > 1:
        return False  # user messages but no window published: not settled
    s.windows[ts] = WindowMark(expires)
    changes.emit(s, T.SERVICE_WINDOW_OPENED, (ts,), ts,
                 {"opened_at": ts, "expires_at": expires, "late": expires <= now})  # fmt: skip
    changes.count(ts, Metric.SERVICE_WINDOWS_OPENED)
    return True


def _status(s: State, b: _Before, known: _Known, now: int, changes: Changes) -> bool:
    """A status of a business message: a conversation opened by its first delivery, and
    the ledger's count of it."""
    assert b.wamid is not None
    m = s.messages.get(b.wamid)
    if m is None:
        return True  # counted long ago: the model's _status changed nothing
    if m.cbp or m.meta_entry_point:
        return False  # Meta's conversations and entry points: the model
    sent = b.first is None and m.first is not None
    delivered = b.delivered is None and m.delivered is not None
    if (m.first != b.first and not sent) or (m.delivered != b.delivered and not delivered):
        return False  # an earlier status of a message already sent or delivered
    if b.delivered is not None and (m.category, m.origin) != b.classified_by:
        return False  # a delivered message's conversation learns its category
    if sent and m.first is not None and _referral_before(s.referrals, m.first):
        return False  # its sending may open an entry point window
    at, opens = m.delivered, None
    if delivered and at is not None:
        if known.delivered is not None and at <= known.delivered:
            return False  # not the latest delivery: conversations after it may move
        told, opens = _conversation_at(s, m, at)
        if not told or (opens is not None and at + CONVERSATION_SECONDS <= now):
            return False  # the marks cannot tell, or to be closed at once: the model
    if opens is not None and at is not None:  # publish.conversations, for the one it opens
        category, initiator = opens
        mark = ConversationMark(
            category, initiator, "regular", "derived", None, at, at + CONVERSATION_SECONDS
        )
        s.conversations[b.wamid] = mark
        changes.emit(s, T.CONVERSATION_OPENED, (b.wamid,), at, publish.conversation_data(mark))
        changes.count(at, Metric.CONVERSATIONS_OPENED, (category, initiator, "regular", "derived"))
    counted = ledger.counted_as(m)  # publish.delivered, for the one message that changed
    if counted != m.counted:
        if m.counted is not None:
            changes.count(m.counted[0], Metric.MESSAGES_DELIVERED, tuple(m.counted[1:]), -1)
        if counted is not None:
            changes.count(counted[0], Metric.MESSAGES_DELIVERED, tuple(counted[1:]))
        m.counted = counted
    if delivered:
        known.delivered = at
    return True


def _referral_before(referrals: Sequence[int], at: int) -> bool:
    """A referral the business may still answer at ``at`` (see entry_point)."""
    i = bisect.bisect_left(referrals, at - REPLY_WITHIN)
    return i < len(referrals) and referrals[i] <= at


def _conversation_at(s: State, m: Message, at: int) -> tuple[bool, tuple[str, str] | None]:
    """The last step of ``conversations.conversations``, a delivery at ``at`` after every
    other one, from the published marks (the truth of a settled state): whether the marks
    tell, and the category and initiator of the conversation it opens (None: one open
    absorbs it)."""
    since = None
    if s.entry_points:
        since = max(s.entry_points)
        if since <= at < s.entry_points[since].expires:
            return True, None  # the entry point's conversation holds it
        if at <= since:
            return False, None
    windows: list[Window] = []
    if s.windows:  # the last window is the only one that may be open at or after its start
        opened = max(s.windows)
        if at < opened or not s.inbound:
            return False, None
        mark = s.windows[opened]
        reason = "meta_131047" if mark.corrected_at else "expired"
        windows.append(Window(opened, s.inbound[-1], mark.expires, reason))
    category, initiator = _classify(m, windows, at)
    if category == "referral_conversion":
        return True, None
    # the conversations open at ``at``: per category the last one opened since the entry
    # point (which closed all before it), if it has not ended
    last: dict[str, tuple[int, str, int]] = {}
    for opener, c in s.conversations.items():
        if c.type == "regular" and (since is None or c.opened >= since):
            seen = last.get(c.category)
            if seen is None or (c.opened, opener) > seen[:2]:
                last[c.category] = (c.opened, opener, c.expires)
    open_ = {cat for cat, (_, _, expires) in last.items() if expires > at}
    absorbed = category in open_ if category in ledger.TEMPLATE_CATEGORIES else bool(open_)
    return True, (None if absorbed else (category, initiator))
