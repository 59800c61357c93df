"""The fast path (:mod:`wawindow.rules.fast`) is the model (:func:`wawindow.rules.engine.apply`)
event for event: the same stored document, transitions (ids, data, order), counter changes,
results, ``due`` and ``keep_until`` after every step, on timelines in any arrival order (with
repeats, delays of up to Meta's 7 days, users named by both ids and linked, group items) and
in order with sweeps between deliveries; and in order it takes most events.

Each timeline runs twice side by side: once through the model, once through the fast path
(its states stored and read back between every other step, kept in memory between the
others, as the store does), both linked and swept by the model's own ``merge`` and ``sweep``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from tests.timelines import (
    DAY,
    HOUR,
    OPTIONS,
    PRICINGS,
    T0,
    USER,
    Delivery,
    events_of,
    items,
    timelines,
)
from wawindow.config import Settings
from wawindow.contracts import CONVERSATION_KINDS
from wawindow.dev import samples
from wawindow.ingest.split import split_body
from wawindow.rules import engine, fast
from wawindow.rules.identity import links_of
from wawindow.rules.state import State
from wawindow.rules.transitions import Changes

RULES = engine.Rules.from_settings(Settings())
BSUID = "US.13491208655302741918"
KEY = f"{samples.PHONE_NUMBER_ID}:{USER}"


def same(model: engine.Outcome, quick: engine.Outcome, key: str) -> None:
    """Two outcomes of one step are the same in everything the store and subscribers see."""
    assert quick.state.encode(key) == model.state.encode(key)
    assert quick.state == model.state  # and in memory, where the store keeps it between calls
    assert [orjson.dumps(t.encode()) for t in quick.transitions] == [
        orjson.dumps(t.encode()) for t in model.transitions
    ]
    assert quick.counters == model.counters
    assert quick.results == model.results
    assert (quick.due, quick.keep_until) == (model.due, model.keep_until)


def settled(state: State, key: str, now: int, rules: engine.Rules = RULES) -> None:
    """What the fast path assumes of a state the model left, when ``prune`` at this wall
    clock would take its early exit: until something of it is due, reconciling it again
    publishes nothing and changes nothing. (A call whose events were all repeats reconciles
    nothing: what fell due since is still to come, and what its prune forgot is settled by
    the next call's prune and the model, not the fast path.)"""
    messages = [m.first or m.delivered or now for m in state.messages.values()]
    if min([*state.inbound[:1], *state.referrals[:1], *messages], default=now) < (
        now - rules.history_s
    ):
        return  # as engine.prune: it would forget facts
    due = engine.next_due(state, rules)
    again = copy.deepcopy(state)
    changes = Changes(key, key.split(":", 1)[0])
    engine._reconcile(again, now if due is None else min(now, due - 1), rules, changes)
    assert (changes.transitions, changes.counters) == ([], [])
    assert again.encode(key) == state.encode(key)


class Pair:
    """The model and the fast path side by side, one State per conversation key each; a key
    linked to another is merged into it (by the model's ``merge``, as the store does)."""

    def __init__(self, rules: engine.Rules = RULES) -> None:
        self.rules = rules
        self.model: dict[str, State] = {}
        self.quick: dict[str, State] = {}
        self.alias: dict[str, str] = {}
        self.stats = fast.Stats(verify=True)
        self.version = 0
        self.steps = 0

    def resolve(self, key: str) -> str:
        while key in self.alias:
            key = self.alias[key]
        return key

    def deliver(self, events: list[dict[str, Any]], now: int) -> None:
        for ev in events:
            for source, target in links_of(ev):
                self.link(source, target, now)
        groups: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            if ev["kind"] in CONVERSATION_KINDS:
                groups.setdefault(self.resolve(ev["key"]), []).append(ev)
        for key, evs in groups.items():
            self.apply(key, evs, now)

    def apply(self, key: str, events: list[dict[str, Any]], now: int) -> None:
        self.step(
            key,
            now,
            lambda s, k: engine.apply(s, k, events, now, self.rules),
            lambda s, k: fast.apply(s, k, events, now, self.rules, stats=self.stats),
        )

    def link(self, source: str, target: str, now: int) -> None:
        source, target = self.resolve(source), self.resolve(target)
        if source == target:
            return
        self.alias[source] = target
        if source not in self.model:
            return
        self.version += 1
        version = str(self.version)
        was, stored = self.model.pop(source), self.quick.pop(source)

        def merge(into: State, key: str, src: State) -> engine.Outcome:
            return engine.merge(into, key, src, source, version, now, self.rules)

        self.step(target, now, lambda s, k: merge(s, k, was), lambda s, k: merge(s, k, stored))

    def sweep(self, now: int) -> None:
        """Sweep what is due, as the worker's sweeper finds it in the deadline index."""
        for key, state in list(self.model.items()):
            due = engine.next_due(state, self.rules)
            if due is not None and due <= now:
                self.step(key, now, lambda s, k: engine.sweep(s, k, now, self.rules))

    def step(
        self,
        key: str,
        now: int,
        model: Callable[[State, str], engine.Outcome],
        quick: Callable[[State, str], engine.Outcome] | None = None,
        *,
        settles: bool = True,  # False: an erasure, which leaves the state unpublished
    ) -> None:
        quick = quick or model
        self.steps += 1
        a = model(self.model.setdefault(key, State()), key)
        b = quick(self.quick.setdefault(key, State()), key)
        same(a, b, key)
        if settles:
            settled(a.state, key, now, self.rules)
        # read back from the stored document every other step, as the store does when the
        # state is not in its memory
        self.quick[key] = State.decode(b.state.encode(key), key) if self.steps % 2 else b.state
        assert self.stats.stale == []  # what the fast path kept of the messages was right


# -- timelines -------------------------------------------------------------------------------


def with_bsuid(raw: bytes) -> bytes:
    """The same body naming the user by both ids (``contacts``), as Meta does since 2026: the
    user's events are then keyed by the BSUID and link the phone number's key to it."""
    body = orjson.loads(raw)
    for entry in body["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            group = any(m.get("group_id") for m in value.get("messages", [])) or any(
                s.get("recipient_type") == "group" for s in value.get("statuses", [])
            )
            if not group:
                value["contacts"] = [samples.contact(USER, BSUID)]
    return samples.encode(body)


@st.composite
def linked(draw: Any, deliveries: list[Delivery]) -> list[Delivery]:
    """Some of the bodies name the user by both ids (each body the same way every time)."""
    bodies = list(dict.fromkeys(d.body for d in deliveries))
    both = draw(st.sets(st.integers(0, len(bodies) - 1))) if bodies else set()
    named = {b: with_bsuid(b) if i in both else b for i, b in enumerate(bodies)}
    return [Delivery(named[d.body], d.arrives) for d in deliveries]


def of_the_cbp_era(raw: bytes, conversation: int) -> bytes:
    """The same body as Meta sent it before 1 Jul 2025: its statuses priced per conversation
    (``pricing_model: CBP``), naming Meta's conversation (one of a few ids, so that Meta and
    the derivation may disagree), its origin and expiry."""
    body = orjson.loads(raw)
    for entry in body["entry"]:
        for change in entry["changes"]:
            for item in change["value"].get("statuses", []):
                pricing = item.get("pricing") or {"category": "utility", "type": "regular"}
                item["pricing"] = {**pricing, "pricing_model": "CBP"}
                item["conversation"] = {
                    "id": f"conversation{conversation}",
                    "origin": {"type": pricing.get("category") or "utility"},
                    "expiration_timestamp": str(int(item["timestamp"]) + DAY),
                }
    return samples.encode(body)


@st.composite
def with_cbp(draw: Any, deliveries: list[Delivery]) -> list[Delivery]:
    """Some of the bodies as of the CBP era (each body the same way every time)."""
    bodies = list(dict.fromkeys(d.body for d in deliveries))
    cbp = draw(st.dictionaries(st.integers(0, len(bodies) - 1), st.integers(0, 2)))
    named = {b: of_the_cbp_era(b, cbp[i]) if i in cbp else b for i, b in enumerate(bodies)}
    return [Delivery(named[d.body], d.arrives) for d in deliveries]


def any_order() -> st.SearchStrategy[list[Delivery]]:
    return timelines().flatmap(linked).flatmap(with_cbp)


def _timestamp(changes: list[dict[str, Any]]) -> tuple[int, set[str]]:
    events = split_body(samples.encode(samples.body(*changes)), 0, OPTIONS).events
    return max(e.timestamp or T0 for e in events), {e.event_id for e in events}


@st.composite
def in_order(draw: Any, max_items: int = 40) -> list[tuple[Delivery, bool]]:
    """Webhook items in the order of their times, a few to a body, each body arriving up to
    half an hour after its latest item; with each, whether the due is swept before it."""
    items_ = []
    ids: set[str] = set()
    for item in draw(st.lists(items(), min_size=1, max_size=max_items)):
        at, these = _timestamp(item)
        if not these & ids:  # two different items never share an event id
            items_.append((at, item))
            ids |= these
    items_.sort(key=lambda i: i[0])
    out: list[tuple[Delivery, bool]] = []
    clock = T0
    while items_:
        n = draw(st.integers(1, 3))
        chunk, items_ = items_[:n], items_[n:]
        raw = samples.encode(samples.body(*[c for _, item in chunk for c in item]))
        clock = max(clock, chunk[-1][0] + draw(st.integers(0, 30)) * 60)
        out.append((Delivery(raw, clock), draw(st.booleans())))
    named = draw(linked([d for d, _ in out]))
    return [(d, sweep) for d, (_, sweep) in zip(named, out, strict=True)]


FREE = samples.pmp_pricing("service", "free_customer_service")
GAPS = [60, 600, HOUR, 6 * HOUR, 20 * HOUR, 30 * HOUR, 3 * DAY]


@st.composite
def exchanges(draw: Any, max_turns: int = 12) -> list[tuple[Delivery, bool]]:
    """In-order traffic as most conversations see it: the user writes or calls, the business
    answers free-form inside the window (or with a template after it), each answer's
    statuses coming in order, ``sent`` and ``delivered`` priced; each item in a body of its
    own, up to two minutes after its time, the due swept before it (as the sweeper does)."""
    timed: list[tuple[int, dict[str, Any]]] = []
    t, wrote = T0, None
    for turn in range(draw(st.integers(1, max_turns))):
        t += draw(st.sampled_from(GAPS))
        if draw(st.integers(0, 3)) or not timed:
            if draw(st.integers(0, 5)):
                message = samples.text_message(f"wamid.in{turn}", t, wa_id=USER)
                timed.append((t, samples.messages_change(messages=[message])))
            else:
                call = samples.call(f"wacid.{turn}", "connect", t)
                timed.append((t, samples.calls_change(calls=[call])))
            wrote = t
        inside = wrote is not None and t + 60 < wrote + DAY
        for j in range(draw(st.integers(0, 2))):
            pricing = FREE if inside else samples.pmp_pricing(draw(st.sampled_from(
                ["utility", "marketing", "authentication"])))  # fmt: skip
            sent = t + 30 + 20 * j
            for state, at in (("sent", sent), ("delivered", sent + 2), ("read", sent + 300)):
                item = samples.status(f"wamid.out{turn}.{j}", state, at, wa_id=USER,
                                      pricing=pricing if state != "read" else None)  # fmt: skip
                timed.append((at, samples.messages_change(statuses=[item])))
    timed.sort(key=lambda i: i[0])
    out = []
    clock = T0
    for at, change in timed:
        clock = max(clock, at + draw(st.integers(0, 120)))
        out.append((Delivery(samples.encode(samples.body(change)), clock), True))
    named = draw(linked([d for d, _ in out]))
    return [(d, sweep) for d, (_, sweep) in zip(named, out, strict=True)]


# -- the properties --------------------------------------------------------------------------


@settings(max_examples=examples(60))
@given(any_order(), st.lists(st.booleans(), max_size=30))
def test_the_fast_path_is_the_model_in_any_arrival_order(
    deliveries: list[Delivery], sweeps: list[bool]
) -> None:
    pair = Pair()
    for i, d in enumerate(deliveries):
        if i < len(sweeps) and sweeps[i]:
            pair.sweep(d.arrives)
        pair.deliver(events_of(d), d.arrives)
    pair.sweep(deliveries[-1].arrives + 9 * DAY)  # everything closed, then forgotten
    pair.deliver(events_of(deliveries[0]), deliveries[-1].arrives + 9 * DAY)


def in_order_share(timelines: st.SearchStrategy[list[tuple[Delivery, bool]]]) -> float:
    """Run in-order timelines through both paths (the due swept before some deliveries, all
    at the end); the share of the events the fast path took, over all of them."""
    taken = fast.Stats()

    @settings(max_examples=examples(60))
    @given(timelines)
    def timeline(deliveries: list[tuple[Delivery, bool]]) -> None:
        pair = Pair()
        for d, sweep in deliveries:
            if sweep:
                pair.sweep(d.arrives)
            pair.deliver(events_of(d), d.arrives)
        pair.sweep(deliveries[-1][0].arrives + 2 * DAY)
        taken.fast += pair.stats.fast
        taken.model += pair.stats.model

    timeline()
    return taken.fast / (taken.fast + taken.model)


def test_the_fast_path_is_the_model_in_order_and_takes_most_events() -> None:
    # referrals, 131047 failures and Meta's entry point pricing, which go to the model, are
    # a third of these timelines' items
    assert in_order_share(in_order()) >= 0.6


def test_the_fast_path_takes_nearly_all_of_an_ordinary_conversation() -> None:
    assert in_order_share(exchanges()) >= 0.9


# -- the cases the fast path leaves to the model ---------------------------------------------


def ev(kind: str, event_id: str, ts: int, **data: Any) -> dict[str, Any]:
    return {"event_id": event_id, "kind": kind, "waba_id": samples.WABA_ID,
            "phone_number_id": samples.PHONE_NUMBER_ID, "key": KEY, "user": {"wa_id": USER},
            "timestamp": ts, "data": data}  # fmt: skip


def text(ts: int, **data: Any) -> dict[str, Any]:
    return ev("message", f"m{ts}", ts, wamid=f"m{ts}", type="text", **data)


def status(wamid: str, state: str, ts: int, **data: Any) -> dict[str, Any]:
    return ev("status", f"s:{wamid}:{state}", ts, wamid=wamid, status=state, **data)


Steps = list[tuple[int, list[dict[str, Any]]]]


def run(steps: Steps, pair: Pair | None = None) -> Pair:
    """Deliver each step's events at its wall clock; a step without events is a sweep."""
    pair = pair or Pair()
    for now, events in steps:
        if events:
            pair.deliver(events, now)
        else:
            pair.sweep(now)
    return pair


T = T0 + DAY
UTILITY = PRICINGS[2]
STOP = {"category": "marketing_messages", "value": "stop"}
EXCHANGE: Steps = [
    (T, [text(T)]),
    (T + 60, [status("o1", "sent", T + 60, pricing=UTILITY)]),
    (T + 70, [status("o1", "delivered", T + 70, pricing=UTILITY)]),  # a utility conversation
    (T + 99, [status("o1", "read", T + 99)]),
    (T + HOUR, [text(T + HOUR)]),  # extends the window
    (T + 2 * DAY, []),  # the window and the conversation closed
    (T + 2 * DAY, [text(T + 2 * DAY)]),  # opens another
    (T + 2 * DAY + 5, [status("o2", "delivered", T + 2 * DAY + 5)]),  # a service conversation
    (T + 2 * DAY + 9, [ev("user_preference", "p", T + 2 * DAY + 9, **STOP)]),
    (T + 2 * DAY + 9, [text(T + 2 * DAY + 9, opt_out_keyword="STOP")]),
    (T + 2 * DAY + 9, [ev("call", "c", T + 2 * DAY + 9, direction="BUSINESS_INITIATED")]),
]
EVENTS = sum(1 for _, events in EXCHANGE if events)


def test_an_exchange_in_order_takes_the_fast_path_throughout() -> None:
    pair = run(EXCHANGE)

    assert (pair.stats.fast, pair.stats.model) == (EVENTS, 0)


LATER = T + 2 * DAY + 20


@pytest.mark.parametrize(
    ("now", "events", "why"),
    [
        (LATER, [text(LATER, referral={"source_id": "ad"})], "a referral"),
        (LATER, [status("o3", "failed", LATER, errors=[{"code": 131047}])], "a 131047 failure"),
        (
            LATER,
            [status("o3", "failed", LATER, errors=[{"code": 131047}]), text(LATER - 5)],
            "a user message older than a 131047 failure",
        ),
        (LATER, [text(T + DAY)], "older than the last user message"),
        (LATER, [status("o3", "delivered", T + 2 * DAY + 1)], "older than the last delivery"),
        (LATER, [status("o2", "read", LATER, pricing=UTILITY)], "a delivered message learns"),
        (LATER, [status("o2", "sent", T + 2 * DAY + 1)], "an earlier sending"),
        (T + 5 * DAY, [text(T + 4 * DAY)], "its window closes at once"),
        (LATER + 23 * HOUR + 1800, [text(LATER)], "its window is warned at once"),
        (LATER, [status("o3", "sent", LATER, pricing={"pricing_model": "CBP"})], "the CBP era"),
        (LATER, [status("o3", "delivered", LATER, pricing=PRICINGS[4])], "Meta's entry point"),
    ],
)
def test_what_the_fast_path_leaves_to_the_model(
    now: int, events: list[dict[str, Any]], why: str
) -> None:
    pair = run([*EXCHANGE, (now, []), (now, events)])

    assert (pair.stats.fast, pair.stats.model) == (EVENTS, len(events)), why


def test_a_message_at_the_windows_end_opens_another() -> None:
    pair = run([(T, [text(T)]), (T + DAY, []), (T + DAY, [text(T + DAY)])])

    assert sorted(pair.model[KEY].windows) == [T, T + DAY]
    assert (pair.stats.fast, pair.stats.model) == (2, 0)


def test_a_delivery_inside_an_entry_point_window_is_its_conversations() -> None:
    pair = run(
        [
            (T, [text(T, referral={"source_id": "ad"})]),  # the model: a referral
            (T + 60, [status("o1", "sent", T + 60)]),  # the model: it opens the entry point
            (T + 70, [status("o1", "delivered", T + 70)]),
            (T + DAY + 60, []),  # past the referral's 24 hours, inside the entry point's 72
            (T + DAY + 60, [status("o2", "delivered", T + DAY + 60)]),
        ]
    )

    assert list(pair.model[KEY].conversations) == [f"fep@{T + 60}"]
    assert (pair.stats.fast, pair.stats.model) == (2, 2)


def test_a_delivery_before_the_last_window_opened_is_the_models() -> None:
    pair = run(
        [
            (T, [text(T)]),
            (T + DAY, []),
            (T + DAY, [text(T + DAY)]),
            (T + DAY + 10, [status("o1", "delivered", T + 23 * HOUR)]),  # in the first window
        ]
    )

    mark = pair.model[KEY].conversations["o1"]
    assert (mark.category, mark.initiator) == ("service", "user")
    assert (pair.stats.fast, pair.stats.model) == (2, 1)


def test_a_user_message_older_than_a_delivery_is_the_models() -> None:
    pair = run([(T + 100, [status("o1", "delivered", T + 100)]), (T + 110, [text(T + 50)])])

    mark = pair.model[KEY].conversations["o1"]
    assert (mark.category, mark.initiator) == ("service", "user")  # learned
    assert (pair.stats.fast, pair.stats.model) == (1, 1)


def test_an_erased_persons_state_and_a_due_close_go_to_the_model() -> None:
    pair = run(EXCHANGE[:3])
    pair.step(KEY, T + 80, lambda s, k: engine.erase(s, k, T + 1, T + 80, RULES), settles=False)
    run([(T + 90, [text(T + 90)])], pair)  # erased once: always the model's
    fresh = run([(T, [text(T)]), (T + 2 * DAY, [text(T + 2 * DAY)])])  # the close not swept

    assert (pair.stats.fast, pair.stats.model) == (3, 1)
    assert (fresh.stats.fast, fresh.stats.model) == (1, 1)


def test_a_state_published_under_another_entry_point_length_goes_to_the_model() -> None:
    pair = run(
        [(T, [text(T, referral={"source_id": "ad"})]), (T + 60, [status("o", "sent", T + 60)])]
    )
    pair.rules = engine.Rules(RULES.closing_soon_offsets_s, 7 * DAY, RULES.counts_retention_s)
    run([(T + HOUR, [text(T + HOUR)]), (T + 2 * HOUR, [text(T + 2 * HOUR)])], pair)

    assert (pair.stats.fast, pair.stats.model) == (1, 3)
    assert pair.model[KEY].entry_points[T + 60].expires == T + 60 + 7 * DAY


def test_invalid_and_repeated_events_in_one_call_are_the_models() -> None:
    events = [text(T), {"event_id": "x"}, text(T), status("o1", "sent", T + 1), text(T)]
    pair = Pair()
    pair.apply(KEY, events, T + 5)
    pair.apply(KEY, [ev("message", "late", T - 9 * DAY, type="text")], T + 6)

    results = engine.apply(State(), KEY, events, T + 5, RULES).results
    assert [(bool(r.error), r.notes) for r in results][1:3] == [(True, ()), (False, ("duplicate",))]
    assert (pair.stats.fast, pair.stats.model) == (2, 1)


def test_closing_soon_warnings_at_any_offsets_are_the_models() -> None:
    rules = engine.Rules((3 * HOUR, HOUR, 0), RULES.free_entry_point_s, RULES.counts_retention_s)
    steps: Steps = [(T, [text(T)])]
    for now in (T + 21 * HOUR, T + 23 * HOUR, T + 45 * HOUR):
        steps += [(now, []), (now, [text(now)])]  # warned, then extended
    pair = run(steps, Pair(rules))

    assert (pair.stats.fast, pair.stats.model) == (4, 0)


# -- past the history: what prune forgets ----------------------------------------------------

# 8 days and 30 hours after T, the history begins inside the conversation o1 opened (which
# began inside the window T opened): prune's cut is T, and it derives that on every call
HORIZON_IN_A_CONVERSATION = T + 8 * DAY + 30 * HOUR
LONG: Steps = [
    (T, [text(T)]),
    (T + HOUR, [status("o2", "failed", T + HOUR)]),  # only ever failed: the prune forgets it
    (T + 20 * HOUR, [status("o1", "delivered", T + 20 * HOUR, pricing=UTILITY)]),
    (T + 2 * DAY, []),
]


def test_a_long_conversation_takes_the_fast_path_once_prune_has_nothing_to_forget() -> None:
    now = HORIZON_IN_A_CONVERSATION
    pair = run([*LONG, (now, [text(now)]), (now + 60, [text(now + 60)])])

    assert "o2" not in pair.model[KEY].messages
    assert (pair.stats.fast, pair.stats.model) == (4, 1)  # the prune forgets o2: the model


def test_applied_ids_are_forgotten_after_the_history() -> None:
    preference = ev("user_preference", "p", T, **STOP)  # a decision: no fact prune reads
    pair = run([(T, [preference]), (T + 9 * DAY, [text(T + 9 * DAY)])])

    assert len(pair.model[KEY].applied) == 1
    assert (pair.stats.fast, pair.stats.model) == (2, 0)


def test_the_billed_memory_outlives_the_history_by_the_rules() -> None:
    pair = run([*LONG, (T + 10 * DAY, [])])  # swept past the history: o1 is billed
    billed = dict(pair.model[KEY].billed)
    run([(T + 40 * DAY, [text(T + 40 * DAY)])], pair)  # and forgotten 31 days on

    assert billed
    assert not pair.model[KEY].billed
    assert (pair.stats.fast, pair.stats.model) == (4, 0)


def test_a_131047_failure_that_outlived_its_message_is_forgotten_by_the_model() -> None:
    steps: Steps = [
        (T, [text(T)]),
        (T + 3 * DAY, [status("o2", "failed", T + 3 * DAY, errors=[{"code": 131047}])]),
        (T + 4 * DAY, [text(T + 4 * DAY)]),
        (T + 9 * DAY + HOUR, []),  # forgets T's window and o2, not the failure
    ]
    pair = run(steps)
    kept = list(pair.model[KEY].cuts)
    now = T + 12 * DAY + 12 * HOUR  # the history begins inside T + 4 days' window, after it
    run([(now, [text(now)])], pair)

    assert kept == [T + 3 * DAY]
    assert pair.model[KEY].cuts == []
    assert (pair.stats.fast, pair.stats.model) == (2, 2)  # the failure, and the prune of it


def test_what_a_prune_without_publishing_forgot_goes_to_the_model() -> None:
    """A call of repeats only prunes and reconciles nothing. The prune below ends at the
    close of the window T + 2.5 days opened, drops its mark and keeps its message (see the
    report: the model then publishes it again): what is left is not settled."""
    steps: Steps = [(T + i * 60, [text(T + i * 60)]) for i in range(3)]
    steps += [(T + 60 * HOUR, [text(T + 60 * HOUR)]), (T + 5 * DAY, [text(T + 5 * DAY)])]
    pair = run(steps)
    horizon_at_its_end = T + 60 * HOUR + DAY + 8 * DAY
    run([(horizon_at_its_end, [text(T + 5 * DAY)])], pair)  # a repeat
    run([(horizon_at_its_end + 60, [text(horizon_at_its_end)])], pair)

    assert (pair.stats.fast, pair.stats.model) == (3, 3)  # two found a close due


def test_a_disagreement_with_metas_conversation_is_noted_as_by_the_model() -> None:
    def delivered(wamid: str, at: int, conversation: str) -> dict[str, Any]:
        pricing = {"pricing_model": "CBP", "category": "utility", "type": "regular"}
        meta = {"id": conversation, "origin_type": "utility", "expiration_timestamp": at + DAY}
        return status(wamid, "delivered", at, pricing=pricing, conversation=meta)

    pair = run([(T, [delivered("o1", T, "c1")]), (T + 60, [delivered("o2", T + 60, "c2")])])

    assert pair.model[KEY].disagreements == ["o2"]
    assert (pair.stats.fast, pair.stats.model) == (0, 2)


def test_a_warning_after_the_close_is_the_models() -> None:
    rules = engine.Rules((HOUR, -600), RULES.free_entry_point_s, RULES.counts_retention_s)
    pair = run([(T, [text(T)]), (T + HOUR, [text(T + HOUR)])], Pair(rules))

    assert (pair.stats.fast, pair.stats.model) == (0, 2)
