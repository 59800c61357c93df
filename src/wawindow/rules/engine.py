"""The rules as one function: ``(state, event, now) -> (state, transitions, counter changes)``.

Each event adds facts to the conversation's state (:mod:`wawindow.rules.state`); the windows,
entry point windows and conversations are then derived from all the facts (:func:`derive`,
with :mod:`~wawindow.rules.service_window`, :mod:`~wawindow.rules.entry_point`,
:mod:`~wawindow.rules.conversations`) and compared with what was already published
(:mod:`~wawindow.rules.publish`). ``sweep`` is the same comparison when only the wall clock
moved: it warns and closes on time.

No I/O: the store (:mod:`wawindow.engine.store`) reads a state, calls these, and writes the
outcome back in one atomic step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from wawindow.contracts import CONVERSATION_KINDS, DAY, TIMESTAMPS, EventKind, Metric, Note, text
from wawindow.rules import identity, ledger, opt_out, publish
from wawindow.rules.conversations import Conversation, conversations
from wawindow.rules.entry_point import REPLY_WITHIN, EntryPoint, entry_points
from wawindow.rules.erasure import forget
from wawindow.rules.service_window import CSW_SECONDS, Window, add, compact, window_at, windows
from wawindow.rules.state import Message, State, event_digest
from wawindow.rules.transitions import Changes, CounterChange, Transition


class Tunables(Protocol):
    """The settings the rules are built from (:class:`wawindow.config.Settings` has them)."""

    @property
    def closing_soon_offsets(self) -> tuple[int, ...]: ...
    @property
    def free_entry_point_hours(self) -> int: ...
    @property
    def counts_retention_days(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Rules:
    """The rules' tunables. Those an operator sets are named as their settings, in seconds,
    and come from them (:meth:`from_settings`); the others are the rules' own."""

    closing_soon_offsets_s: tuple[int, ...]  # largest first
    # Meta says 72 hours; one 2026 source says up to 7 days, so it is a setting
    free_entry_point_s: int
    # counts, and what outlives a conversation (an opted-out or erased user's state after
    # their last change, the links between a user's ids), are kept this long
    counts_retention_s: int
    # Meta retries for up to 7 days: facts, ids and published marks are kept a day longer
    history_s: int = 8 * DAY
    # a message counted as delivered is remembered this long, so a late read never bills it again
    billed_memory_s: int = 31 * DAY
    # state outlives the latest end it knows by this much (late webhooks, the API)
    grace_s: int = 8 * DAY

    @classmethod
    def from_settings(cls, settings: Tunables) -> Rules:
        return cls(
            closing_soon_offsets_s=tuple(sorted(settings.closing_soon_offsets, reverse=True)),
            free_entry_point_s=settings.free_entry_point_hours * 3600,
            counts_retention_s=settings.counts_retention_days * DAY,
        )


@dataclass(frozen=True, slots=True)
class EventResult:
    """What became of one event: ``error`` when it cannot be applied (nothing of it was),
    else what it repeated or corrected (:class:`~wawindow.contracts.Note`)."""

    error: str | None = None
    notes: tuple[Note, ...] = ()


@dataclass(slots=True)
class Outcome:
    state: State
    transitions: list[Transition] = field(default_factory=list)
    counters: list[CounterChange] = field(default_factory=list)
    results: list[EventResult] = field(default_factory=list)
    due: int | None = None  # the next wall-clock second something is to be warned or closed
    keep_until: int = 0  # the wall-clock second the state may be forgotten


def apply(
    state: State, key: str, events: Sequence[Mapping[str, Any]], now: int, rules: Rules
) -> Outcome:
    """Apply a conversation's events in order, each followed by publishing what it changed."""
    changes = _changes(key)
    out = Outcome(state)
    prune(state, now, rules)
    for ev in events:
        if not admitted(state, ev, now, out):
            continue
        notes = _add_facts(state, ev, changes)
        before = len(changes.counters)
        _reconcile(state, now, rules, changes)
        if any(
            c.metric == Metric.CONVERSATION_DISAGREEMENTS and c.delta > 0
            for c in changes.counters[before:]
        ):
            notes = (*notes, Note.DISAGREEMENT)
        out.results.append(EventResult(notes=notes))
    return _finish(out, changes, now, rules)


def admitted(state: State, ev: Mapping[str, Any], now: int, out: Outcome) -> bool:
    """Whether ``ev`` is to be applied to ``state`` (its id then remembered as applied);
    else its result (why not) is added to ``out``: invalid, an erased person's, a repeat."""
    error = invalid(ev)
    if error is not None:
        out.results.append(EventResult(error=error))
        return False
    if state.erased and _erased(state, ev):
        out.results.append(EventResult(notes=(Note.ERASED,)))  # never brings the person back
        return False
    digest = event_digest(ev["event_id"])
    if digest in state.applied:
        out.results.append(EventResult(notes=(Note.DUPLICATE,)))
        return False
    state.applied[digest] = now
    return True


def sweep(state: State, key: str, now: int, rules: Rules) -> Outcome:
    """Warn and close what the wall clock has reached."""
    changes = _changes(key)
    out = Outcome(state)
    prune(state, now, rules)
    _reconcile(state, now, rules, changes)
    return _finish(out, changes, now, rules)


def merge(
    state: State,
    key: str,
    source: State,
    source_key: str,
    source_version: str,
    now: int,
    rules: Rules,
) -> Outcome:
    """Fold the state of another key of the same user into this one (once per version of
    it, so a repeated link merges nothing twice), then publish what the merged facts say."""
    changes = _changes(key)
    out = Outcome(state)
    if state.linked.get(source_key) != source_version:
        identity.merge(state, source, changes)
        state.linked[source_key] = source_version
    prune(state, now, rules)
    _reconcile(state, now, rules, changes)
    return _finish(out, changes, now, rules)


def erase(state: State, key: str, at: int, now: int, rules: Rules) -> Outcome:
    """Forget the person up to Meta's time ``at``: every fact of that time or before and
    what was published of it, without transitions (subscribers are told ``user.erased``) and
    without moving the counts (aggregates, which hold no personal data, stay). What remains
    is a tombstone that keeps older events, replayed or late, from bringing them back."""
    state.erased = max(state.erased, at)
    forget(state)
    return _finish(Outcome(state), _changes(key), now, rules)


def _changes(key: str) -> Changes:
    return Changes(key, key.split(":", 1)[0])


def _finish(out: Outcome, changes: Changes, now: int, rules: Rules) -> Outcome:
    out.transitions, out.counters = changes.transitions, changes.counters
    out.due = next_due(out.state, rules)
    out.keep_until = keep_until(out.state, now, rules)
    return out


def invalid(ev: Mapping[str, Any]) -> str | None:
    """Why an event cannot be applied, checked before anything of it is."""
    if not isinstance(ev, Mapping) or not isinstance(ev.get("event_id"), str):
        return "event without an event_id"
    if not isinstance(ev.get("key"), str) or not isinstance(ev.get("kind"), str):
        return f"event {ev['event_id']} has no key or kind"
    if not isinstance(ev.get("data"), dict):
        return f"event {ev['event_id']} has no data object"
    ts = ev.get("timestamp")
    if ev.get("kind") in CONVERSATION_KINDS and (type(ts) is not int or ts not in TIMESTAMPS):
        return f"event {ev['event_id']} has no Unix timestamp in range: {ts!r}"
    if ev.get("kind") == EventKind.STATUS and not (
        isinstance(ev["data"].get("wamid"), str) and isinstance(ev["data"].get("status"), str)
    ):
        return f"status {ev['event_id']} has no wamid or status"
    return None


def _add_facts(s: State, ev: Mapping[str, Any], changes: Changes) -> tuple[Note, ...]:
    user = ev.get("user")
    if isinstance(user, dict) and not ev["data"].get("group_id"):  # a participant is not the group
        s.user_id = text(user.get("user_id")) or s.user_id
        s.wa_id = text(user.get("wa_id")) or s.wa_id
    s.waba_id = text(ev.get("waba_id")) or s.waba_id
    kind, data, ts = ev.get("kind"), ev["data"], ev.get("timestamp")
    notes: tuple[Note, ...] = ()
    if not isinstance(ts, int):
        return notes
    if kind == EventKind.MESSAGE and data.get("type") != "system":
        if s.inbound and ts < s.inbound[-1]:
            notes = (Note.OUT_OF_ORDER,)
        add(s.inbound, ts)
        changes.count(ts, Metric.INBOUND_MESSAGES)
        if isinstance(data.get("referral"), dict):
            add(s.referrals, ts)
        if data.get("opt_out_keyword"):
            opt_out.decide(s, opt_out.ALL, ts, True, "keyword")
    elif kind == EventKind.CALL and str(data.get("direction", "")).upper() == "USER_INITIATED":
        add(s.inbound, ts)
        if data.get("event") == "connect":
            changes.count(ts, Metric.INBOUND_CALLS)
    elif kind == EventKind.STATUS:
        notes = _status(s, ts, data)
    elif kind == EventKind.USER_PREFERENCE:
        value = data.get("value")
        if data.get("category") == "marketing_messages" and value in ("stop", "resume"):
            opt_out.decide(s, opt_out.MARKETING, ts, value == "stop", "user_preferences")
    return notes


def _erased(s: State, ev: Mapping[str, Any]) -> bool:
    """An event of the time an erasure covers, or a late status of a message it forgot."""
    if ev.get("kind") in CONVERSATION_KINDS and ev["timestamp"] <= s.erased:
        return True
    return ev.get("kind") == EventKind.STATUS and event_digest(_wamid(ev["data"])) in (
        s.erased_messages
    )


def _wamid(data: Mapping[str, Any]) -> str:
    """The ledger's key of a status: a group message is billed per participant's delivery."""
    wamid = str(data["wamid"])
    return f"{wamid}|{data['participant']}" if data.get("participant") else wamid


def _status(s: State, ts: int, data: dict[str, Any]) -> tuple[Note, ...]:
    wamid = _wamid(data)
    if event_digest(wamid) in s.billed:
        return (Note.DUPLICATE,)  # counted long ago; nothing about it changes any more
    m = s.messages.setdefault(wamid, Message())
    late = ledger.record_status(m, data["status"], ts, data)
    corrected = False
    errors = data.get("errors")
    for err in errors if isinstance(errors, list) else []:
        code = err.get("code") if isinstance(err, dict) else None
        if code == 131047:  # Meta: more than 24 h since the user last wrote, at ts
            if window_at(windows(s.inbound, s.cuts), ts) is not None:
                corrected = True  # the tracker thought the window open
            add(s.cuts, ts)
        elif code == 131050:  # the user stopped marketing messages
            opt_out.decide(s, opt_out.MARKETING, ts, True, "meta_131050")
    notes = (Note.OUT_OF_ORDER,) if late and not corrected else ()
    return (*notes, Note.CSW_CORRECTION) if corrected else notes


class Truth(NamedTuple):
    """What a state's facts say, derived from them alone: the service windows, the free entry
    point windows and the conversations (oldest first), and the deliveries Meta's
    conversation id and the derivation disagree on."""

    windows: list[Window]
    entry_points: list[EntryPoint]
    conversations: list[Conversation]
    disagreements: list[str]


def derive(s: State, rules: Rules) -> Truth:
    """The truth of ``s``: what the rules publish and what the views show."""
    ws = windows(s.inbound, s.cuts)
    eps = entry_points(s.referrals, s.messages, rules.free_entry_point_s)
    convs, disagreements = conversations(s.messages, ws, eps)
    return Truth(ws, eps, convs, disagreements)


def _reconcile(s: State, now: int, rules: Rules, changes: Changes) -> None:
    truth = derive(s, rules)
    publish.service_windows(s, truth.windows, now, rules.closing_soon_offsets_s, changes)
    publish.entry_points(s, truth.entry_points, now, changes)
    publish.conversations(s, truth.conversations, now, changes)
    publish.delivered(s, changes)
    publish.disagreements(s, truth.disagreements, changes)
    publish.opt_outs(s, changes)


def prune(s: State, now: int, rules: Rules) -> None:
    """Forget what is older than the history (Meta's retries), with what was published of
    it: the facts of windows and conversations that ended before a moment no window,
    entry point or conversation spans, the billed messages past their memory, the applied
    event ids past Meta's retries."""
    horizon = now - rules.history_s
    s.applied = {d: at for d, at in s.applied.items() if at >= horizon}
    s.billed = {w: at for w, at in s.billed.items() if at >= now - rules.billed_memory_s}
    oldest = min(
        [
            *s.inbound[:1],
            *s.referrals[:1],
            *(m.first or m.delivered or now for m in s.messages.values()),
        ],
        default=now,
    )
    if oldest >= horizon:
        return
    ws, eps, convs, _ = derive(s, rules)
    spans = [(w.opened, w.expires) for w in ws] + [(e.opened, e.expires) for e in eps]
    spans += [(c.opened, c.expires) for c in convs]
    cut = horizon
    moved = True
    while moved:  # back to a moment nothing spans
        moved = False
        for opened, expires in spans:
            if opened < cut < expires:
                cut, moved = opened, True
    s.inbound = compact(s.inbound, s.cuts, cut)
    s.cuts = [c for c in s.cuts if c >= cut]
    s.referrals = [r for r in s.referrals if r + REPLY_WITHIN >= cut]
    for wamid, m in list(s.messages.items()):
        if max(m.first or 0, m.delivered or 0) < cut:
            del s.messages[wamid]
            if m.counted is not None:
                s.billed[event_digest(wamid)] = m.counted[0]
    s.windows = {o: w for o, w in s.windows.items() if o >= cut}
    s.entry_points = {o: e for o, e in s.entry_points.items() if o >= cut}
    s.conversations = {k: c for k, c in s.conversations.items() if c.opened >= cut}
    s.disagreements = [w for w in s.disagreements if w in s.messages]


def next_due(s: State, rules: Rules) -> int | None:
    """The next wall-clock second a warning or a close is due; once everything is closed,
    when the history is over and all but the billed messages can be forgotten."""
    due = open_due(s, rules)
    if due is not None:
        return due
    # all closed: one more sweep once the history is over, to forget all but the billed
    ends = [ts + CSW_SECONDS for ts in s.inbound[-1:]]
    ends += [t for m in s.messages.values() for t in (m.first, m.delivered) if t is not None]
    ends += [e.expires for e in s.entry_points.values()]
    ends += [c.expires for c in s.conversations.values()]
    return int(max(ends)) + rules.history_s + 1 if ends else None


def open_due(s: State, rules: Rules) -> int | None:
    """The next warning or close of what is open (None: everything is closed)."""
    times: list[int] = []
    offsets = rules.closing_soon_offsets_s
    for w in s.windows.values():
        if not w.closed:
            times.append(w.expires - offsets[w.warned] if w.warned < len(offsets) else w.expires)
    times += [e.expires for e in s.entry_points.values() if not e.closed]
    times += [c.expires for c in s.conversations.values() if not c.closed]
    return int(min(times)) if times else None


def keep_until(s: State, now: int, rules: Rules) -> int:
    """When the state may be forgotten: the history past the latest end it knows, the billed
    messages' memory, and much longer while the user is opted out."""
    delivered = [m.delivered for m in s.messages.values() if m.delivered is not None]
    return keep_until_delivered(s, now, rules, max(delivered, default=None))


def keep_until_delivered(s: State, now: int, rules: Rules, delivered: int | None) -> int:
    """:func:`keep_until`, given the messages' latest delivery (None: none was)."""
    ends = [now]
    ends += [w.expires for w in s.windows.values()]
    ends += [e.expires for e in s.entry_points.values()]
    ends += [c.expires for c in s.conversations.values()]
    until = max(ends) + rules.grace_s
    billed = [] if delivered is None else [delivered]
    billed += list(s.billed.values())
    if billed:
        until = max(until, max(billed) + rules.billed_memory_s)
    if s.erased or any(opt_out.opted_out(s, f) for f in opt_out.FIELDS):
        until = max(until, now + rules.counts_retention_s)
    return until
