"""Property-based tests: the engine on a real Redis ends exactly where the rules model does,
and the outcomes Meta's rules make independent of arrival order are.

Each example is a timeline of webhook bodies (inbound messages, calls, referrals, keyword
opt-outs, statuses with and without pricing, 131047/131050 failures, user preferences, group
messages and per-participant group statuses) delivered in a random order, some twice, each
up to 7 days late. The engine sees them through ``split_body`` and the worker's apply path
(``WindowStore.link_many`` and ``apply``, then a sweep at the end), on the session's real
redis-server; the model is :mod:`wawindow.rules` alone, in memory.

Profiles: ``ci`` (a fixed number of derandomized examples; used when ``CI`` is set) and
``dev`` (more, random). ``HYPOTHESIS_PROFILE`` picks one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Services, examples
from tests.timelines import DAY, PRICINGS, T0, USER, Delivery, events_of, timelines
from wawindow.contracts import CounterField
from wawindow.dev import samples
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.views import view_of
from wawindow.finance.counts import read_counters
from wawindow.redis.connection import connect
from wawindow.rules import engine
from wawindow.rules.identity import links_of
from wawindow.rules.state import State

pytestmark = [pytest.mark.redis]
RULES = EngineConfig().rules


class Model:
    """The rules alone: one State per conversation key, counters summed in a Counter."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}
        self.counters: Counter[tuple[int, str]] = Counter()
        self.transitions: list[tuple[str, str]] = []  # (conversation, transition id)

    def deliver(self, events: list[dict[str, Any]], now: int) -> None:
        groups: dict[str, list[dict[str, Any]]] = {}
        for ev in events:
            assert not links_of(ev), "timelines here name each user by one id"
            if ev["kind"] in ("message", "status", "user_preference", "call"):
                groups.setdefault(ev["key"], []).append(ev)
        for key, evs in groups.items():
            self._run(key, engine.apply(self.state(key), key, evs, now, RULES))

    def sweep(self, now: int) -> None:
        """Sweep what is due, as the worker's sweeper finds it in the deadline index."""
        for key, state in self.states.items():
            due = engine.next_due(state, RULES)
            if due is not None and due <= now:
                self._run(key, engine.sweep(state, key, now, RULES))

    def state(self, key: str) -> State:
        return self.states.setdefault(key, State())

    def _run(self, key: str, outcome: engine.Outcome) -> None:
        self.transitions += [(t.key, t.id) for t in outcome.transitions]
        number = key.split(":", 1)[0]
        for c in outcome.counters:
            f = CounterField.at(c.at, outcome.state.waba_id or "", number, c.metric, c.dims)
            self.counters[f.day, f.encode()] += c.delta


def model_run(deliveries: list[Delivery]) -> Model:
    model = Model()
    for d in deliveries:
        model.deliver(events_of(d), d.arrives)
    model.sweep(deliveries[-1].arrives + DAY)
    return model


def counts(model: Model) -> Counter[tuple[int, str]]:
    return Counter({k: v for k, v in model.counters.items() if v})


async def engine_run(redis_url: str, deliveries: list[Delivery]) -> dict[str, Any]:
    redis = await connect(redis_url)
    try:
        await redis.flushdb()
        store = WindowStore(redis, EngineConfig())
        published: list[tuple[str, str]] = []
        for d in deliveries:
            events = events_of(d)
            links = [pair for ev in events for pair in links_of(ev)]
            applied = await store.link_many(links, d.arrives) if links else []
            conversation = [
                (ev["key"], ev)
                for ev in events
                if ev["kind"] in ("message", "status", "user_preference", "call")
            ]
            report = await store.apply(conversation, d.arrives)
            assert not [r for r in report.results if isinstance(r, Exception)]
            for a in applied + report.applied:
                published += [(t.key, t.id) for t in a.transitions]
                await store.acknowledge(a.outbox)
        end = deliveries[-1].arrives + DAY
        due = await store.deadlines.due(end, limit=10_000)
        closed, failed = await store.close(due, end)
        assert not failed
        published += [(t.key, t.id) for a in closed for t in a.transitions]
        keys = {ev["key"] for d in deliveries for ev in events_of(d) if ":" in ev["key"]}
        states = {k: await store.conversation(k) for k in keys}
        # every day a fact of the timeline can fall on (Meta's times start at T0)
        rows = await read_counters(redis, T0 // DAY - 1, end // DAY + 1)
        stored: Counter[tuple[int, str]] = Counter()
        for r in rows:  # the same field in two shards' hashes adds up, as finance's reads do
            f = CounterField(r.day, r.quarter, r.waba_id, r.phone_number_id, r.metric, r.dimensions)
            stored[r.day, f.encode()] += r.count
        return {"transitions": published, "states": states, "counters": stored, "end": end}
    finally:
        await redis.aclose()


def per_conversation(transitions: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, transition_id in transitions:
        out.setdefault(key, []).append(transition_id)
    return out


def db3(services: Services) -> str:
    """A database of its own: no other test's running process sweeps it."""
    return services.redis_url.rsplit("/", 1)[0] + "/3"


@settings(max_examples=examples(40))
@given(timelines())
def test_the_engine_on_redis_ends_exactly_where_the_model_does(
    services: Services, deliveries: list[Delivery]
) -> None:
    model = model_run(deliveries)
    got = asyncio.run(engine_run(db3(services), deliveries))

    # in order within each conversation (a sweep's conversations come in no particular order)
    assert per_conversation(got["transitions"]) == per_conversation(model.transitions)
    assert got["counters"] == counts(model)
    for key, state in got["states"].items():
        assert state.encode() == model.state(key).encode(), key
        number = key.split(":", 1)[0]
        end = got["end"]
        assert view_of(state, number, end, RULES) == view_of(model.state(key), number, end, RULES)


@settings(max_examples=examples(150))
@given(timelines(), st.randoms(use_true_random=False))
def test_what_the_rules_make_independent_of_arrival_order_is(
    deliveries: list[Delivery], random: Any
) -> None:
    """The same bodies in another order, all arriving once Meta's retries are over: the same
    windows, conversations, opt-outs, send-check views and counts (which transitions were
    published on the way may differ: see docs/engine.md)."""
    # the moment of the latest fact: no body is then later than Meta's 7 days of retries
    end = max(e["timestamp"] or 0 for d in deliveries for e in events_of(d))
    first = [Delivery(d.body, end) for d in deliveries]
    shuffled = list(first)
    random.shuffle(shuffled)
    a, b = model_run(first), model_run(shuffled)

    assert counts(a) == counts(b)
    for key in a.states.keys() | b.states.keys():
        number = key.split(":", 1)[0]
        assert view_of(a.state(key), number, end, RULES) == view_of(
            b.state(key), number, end, RULES
        )


@settings(max_examples=examples(100))
@given(timelines(), st.integers(0, 20), st.integers(1, 3), st.randoms(use_true_random=False))
def test_an_erasure_leaves_the_same_in_every_arrival_order_and_nothing_before_it(
    deliveries: list[Delivery], position: int, later: int, random: Any
) -> None:
    """A person erased after every fact of a timeline, the erasure arriving anywhere among
    its bodies, then writing again: whatever the order, no fact of before the erasure is
    kept, every view is what the new messages alone make, and nothing of it is counted
    twice by a replay of all of it."""
    end = max(e["timestamp"] or 0 for d in deliveries for e in events_of(d))
    erased_at = end + 1
    fresh = [
        Delivery(samples.encode(samples.body(samples.messages_change(messages=[
            samples.text_message(f"wamid.new{i}", erased_at + 600 * i, wa_id=USER)]))), end + 1)
        for i in range(1, later + 1)
    ]  # fmt: skip
    arrivals = [Delivery(d.body, end) for d in deliveries] + fresh
    random.shuffle(arrivals)
    cut = min(position, len(arrivals))

    key = f"{samples.PHONE_NUMBER_ID}:{USER}"
    model = Model()
    for d in arrivals[:cut]:
        model.deliver(events_of(d), d.arrives)
    engine.erase(model.state(key), key, erased_at, end + 1, RULES)
    # a read receipt, after the erasure, of a message the tracker knew before it
    known = sorted(
        {e["data"]["wamid"] for d in arrivals[:cut] for e in events_of(d)
         if e["kind"] == "status" and e["key"] == key}
    )  # fmt: skip
    for wamid in known:
        read = samples.status(wamid, "read", erased_at + 300, pricing=PRICINGS[1])
        late = samples.messages_change(statuses=[read])
        model.deliver(events_of(Delivery(samples.encode(samples.body(late)), end + 1)), end + 1)
    for d in arrivals[cut:]:
        model.deliver(events_of(d), max(d.arrives, end + 1))
    for d in deliveries:  # a replay of every older webhook changes nothing
        model.deliver(events_of(d), end + 2)
    alone = model_run(fresh)

    state = model.state(key)
    assert all(t > erased_at for t in state.inbound + state.cuts + state.referrals)
    assert all(d.at > erased_at for d in state.decisions.values())
    assert all(m.first is None or m.first > erased_at for m in state.messages.values())
    number = samples.PHONE_NUMBER_ID
    assert view_of(state, number, end + 2, RULES) == view_of(
        alone.state(key), number, end + 2, RULES
    )
