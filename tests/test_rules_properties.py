"""Property-based tests: the engine on a real Redis ends exactly where the rules model does,
and the outcomes Meta's rules make independent of arrival order are.

Each example is a timeline of webhook bodies (inbound messages, calls, referrals, keyword
opt-outs, statuses with and without pricing, 131047/131050 failures, user preferences, group
messages and per-participant group statuses) delivered in a random order, some twice, each
up to 7 days late; the user named by their wa_id alone, or (the second property) by their
wa_id, their BSUID or both, changing number or BSUID on the way, and swept between
deliveries at random times. The engine sees them through ``split_body`` and the worker's
path (``WindowStore.link_many`` then ``apply``) and is swept through its deadline index
(``deadlines.due`` and ``close``), on the session's real redis-server; the model is
:mod:`wawindow.rules` alone, in memory, with a user's keys linked as the engine links them
(:class:`Model`). The two are compared after every delivery and sweep.

Profiles: ``ci`` (a fixed number of derandomized examples; used when ``CI`` is set) and
``dev`` (more, random). ``HYPOTHESIS_PROFILE`` picks one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.conftest import Services, examples
from tests.timelines import (
    BSUID,
    DAY,
    LATEST_BSUID,
    NEW_BSUID,
    NEW_USER,
    PRICINGS,
    T0,
    USER,
    Delivery,
    Sweep,
    events_of,
    timelines,
    timelines_of_ids,
    with_sweeps,
)
from wawindow import keys
from wawindow.contracts import CONVERSATION_KINDS, CounterField
from wawindow.dev import samples
from wawindow.engine.documents import Applied
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.views import view_of
from wawindow.finance.counts import read_counters
from wawindow.redis.connection import AnyRedis, connect, text
from wawindow.rules import engine
from wawindow.rules.engine import EventResult
from wawindow.rules.identity import links_of
from wawindow.rules.state import State
from wawindow.rules.transitions import Transition

pytestmark = [pytest.mark.redis]
RULES = EngineConfig().rules
Published = list[tuple[str, str]]  # (conversation, transition id), in publishing order


class Model:
    """The rules alone: one State per conversation key, counters summed in a Counter, and
    a user's keys linked as ``WindowStore.link_many`` links them (:meth:`link`).

    Each key's document version is kept as Redis keeps it (``commit.lua``: one more on every
    write of the key's document, none once it is forgotten): ``engine.merge`` records the
    version of the source it merged (``State.linked``), and that record is what keeps a
    repeated link from merging twice, so the states are compared with it, not without."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}
        self.versions: Counter[str] = Counter()
        self.aliases: dict[str, str] = {}  # a key -> the key its user was linked to
        self.counters: Counter[tuple[int, str]] = Counter()
        self.transitions: Published = []
        self._step: list[Transition] = []  # what the current step publishes

    def home(self, key: str) -> str:
        """Where the user of ``key`` lives now: the key itself, or where its aliases lead."""
        while key in self.aliases:
            key = self.aliases[key]
        return key

    def deliver(self, events: list[dict[str, Any]], now: int) -> list[EventResult]:
        """The worker's batch of one body: link what its events link, then apply each
        conversation's events where its user lives; the results of those events, in order."""
        pairs = [pair for ev in events for pair in links_of(ev)]
        if pairs:
            self.link(pairs, now)
        groups: dict[str, list[int]] = {}
        applied = [ev for ev in events if ev["kind"] in CONVERSATION_KINDS]
        for i, ev in enumerate(applied):
            groups.setdefault(self.home(ev["key"]), []).append(i)
        results: list[EventResult] = [EventResult(error="not applied")] * len(applied)
        for key, indexes in groups.items():
            evs = [applied[i] for i in indexes]
            outcome = engine.apply(self.state(key), key, evs, now, RULES)
            for i, r in zip(indexes, outcome.results, strict=True):
                results[i] = r
            self._write(key, outcome)
        self._published()
        return results

    def link(self, pairs: list[tuple[str, str]], now: int) -> None:
        """``Links.link`` and ``WindowStore._merge``: the pairs sorted and de-duplicated, each
        seeing the links made before it. When the source's user lives elsewhere than the
        target's, a source state that holds anything is merged into the target's (as the
        version it is at) and forgotten, and the source's home points at the target's; the
        source itself points there too."""
        for source, target in sorted({(s, t) for s, t in pairs if s != t}):
            src, dst = self.home(source), self.home(target)
            if src != dst:
                held = self.states.get(src)
                if held is not None and not held.empty:
                    version = str(self.versions[src])
                    self._write(
                        dst, engine.merge(self.state(dst), dst, held, src, version, now, RULES)
                    )
                    del self.states[src], self.versions[src]  # its document is deleted
                self.aliases[src] = dst
            if source != dst:
                self.aliases[source] = dst

    def sweep(self, now: int) -> None:
        """Sweep what is due, as the worker's sweeper finds it in the deadline index."""
        for key, state in list(self.states.items()):
            due = engine.next_due(state, RULES)
            if due is not None and due <= now:
                self._write(key, engine.sweep(state, key, now, RULES))
        self._published()

    def state(self, key: str) -> State:
        return self.states.setdefault(key, State())

    def _write(self, key: str, outcome: engine.Outcome) -> None:
        self.versions[key] += 1
        self._step += outcome.transitions
        number = key.split(":", 1)[0]
        for c in outcome.counters:
            f = CounterField.at(c.at, outcome.state.waba_id or "", number, c.metric, c.dims)
            self.counters[f.day, f.encode()] += c.delta

    def _published(self) -> None:
        self.transitions += once(self._step)
        self._step = []


def once(transitions: list[Transition]) -> Published:
    """What the worker publishes of a batch's transitions: each id once (a write publishes
    again what an earlier write of the batch left unacknowledged in the outbox)."""
    seen: set[str] = set()
    out: Published = []
    for t in transitions:
        if t.id not in seen:
            seen.add(t.id)
            out.append((t.key, t.id))
    return out


def model_run(deliveries: list[Delivery]) -> Model:
    model = Model()
    for d in deliveries:
        model.deliver(events_of(d), d.arrives)
    model.sweep(deliveries[-1].arrives + DAY)
    return model


def counts(model: Model) -> Counter[tuple[int, str]]:
    return Counter({k: v for k, v in model.counters.items() if v})


class OnRedis:
    """The engine as the worker and the sweeper drive it, on a real Redis."""

    def __init__(self, redis: AnyRedis) -> None:
        self.redis = redis
        self.store = WindowStore(redis, EngineConfig())
        self.transitions: Published = []

    async def deliver(self, events: list[dict[str, Any]], now: int) -> list[EventResult]:
        """The worker's batch of one body (``Worker._handle``): link, then apply."""
        links = [pair for ev in events for pair in links_of(ev)]
        applied = await self.store.link_many(links, now) if links else []
        conversation = [(ev["key"], ev) for ev in events if ev["kind"] in CONVERSATION_KINDS]
        report = await self.store.apply(conversation, now)
        results = [r for r in report.results if isinstance(r, EventResult)]
        assert results == report.results, report.results
        await self._publish(applied + report.applied)
        return results

    async def sweep(self, now: int) -> None:
        due = await self.store.deadlines.due(now, limit=10_000)
        closed, failed = await self.store.close(due, now)
        assert not failed
        await self._publish(closed)

    async def _publish(self, applied: list[Applied]) -> None:
        self.transitions += once([t for a in applied for t in a.transitions])
        for a in applied:  # Kafka has them: out of the outbox
            await self.store.acknowledge(a.outbox)

    async def versions(self, conversation_keys: list[str]) -> dict[str, int]:
        """Each key's document version (0: none): how many times it was written."""
        pipe = self.redis.pipeline(transaction=False)
        for key in conversation_keys:
            pipe.get(keys.ConversationKeys.of(key).state)
        raws = await pipe.execute()
        return {
            k: int(text(raw).split(" ", 1)[0]) if raw else 0
            for k, raw in zip(conversation_keys, raws, strict=True)
        }

    async def counters(self) -> Counter[tuple[int, str]]:
        """Every counter in the database (the same field in two shards' hashes adds up, as
        finance's reads do)."""
        names = sorted(text(k) for k in await self.redis.keys("{ww:*}:n:*"))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        stored: Counter[tuple[int, str]] = Counter()
        for name, fields in zip(names, await pipe.execute() if names else [], strict=True):
            day = int(name.rsplit(":", 1)[1])
            for field, count in fields.items():
                f = CounterField.decode(day, text(field))
                stored[day, f.encode()] += int(count)
        return Counter({k: v for k, v in stored.items() if v})


async def same(on_redis: OnRedis, model: Model, seen: set[str], now: int) -> None:
    """The engine and the model agree: where each key's user lives, the stored state of
    every key (forgotten where the model forgot it) and its version, what each conversation
    published (in order within it: a sweep's conversations come in no particular order), the
    counters, and each user's send-check view at ``now``."""
    known = sorted(seen)
    homes = await on_redis.store.resolve(known)
    assert homes == {k: model.home(k) for k in known}
    stored = await on_redis.store.conversations(known)
    for key in known:
        assert stored[key].encode(key) == model.states.get(key, State()).encode(key), key
    assert await on_redis.versions(known) == {k: model.versions[k] for k in known}
    assert per_conversation(on_redis.transitions) == per_conversation(model.transitions)
    assert await on_redis.counters() == counts(model)
    for key in sorted(set(homes.values())):
        number = key.split(":", 1)[0]
        state = model.states.get(key, State())
        assert view_of(stored[key], number, now, RULES) == view_of(state, number, now, RULES)


async def lockstep(redis_url: str, steps: list[Delivery | Sweep]) -> None:
    """Each step through the engine on Redis and through the model; compared after each."""
    redis = await connect(redis_url)
    try:
        await redis.flushdb()
        on_redis, model = OnRedis(redis), Model()
        seen: set[str] = set()
        for step in steps:
            if isinstance(step, Sweep):
                now = step.at
                await on_redis.sweep(now)
                model.sweep(now)
            else:
                now = step.arrives
                events = events_of(step)
                got = await on_redis.deliver(events, now)
                assert got == model.deliver(events, now)
                seen |= {ev["key"] for ev in events if ":" in ev["key"]}
                seen |= {k for ev in events for pair in links_of(ev) for k in pair}
            await same(on_redis, model, seen, now)
        # every counter of every day a fact of the timeline can fall on, as finance reads them
        rows = await read_counters(redis, T0 // DAY - 1, now // DAY + 1)
        stored: Counter[tuple[int, str]] = Counter()
        for r in rows:
            f = CounterField(r.day, r.quarter, r.waba_id, r.phone_number_id, r.metric, r.dimensions)
            stored[r.day, f.encode()] += r.count
        assert stored == counts(model)
    finally:
        await redis.aclose()


def per_conversation(transitions: Published) -> dict[str, list[str]]:
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
    asyncio.run(lockstep(db3(services), [*deliveries, Sweep(deliveries[-1].arrives + DAY)]))


def _sent(at: int, *messages: dict[str, Any]) -> Delivery:
    return Delivery(samples.encode(samples.body(samples.messages_change(messages=[*messages]))), at)


# a key whose state the history forgot to nothing, then linked: it has nothing to merge (its
# empty document stays, the target merges nothing and records no version of it)
FORGOTTEN_THEN_LINKED: list[Delivery | Sweep] = [
    _sent(T0, samples.text_message("wamid.a", T0, wa_id=USER)),
    Sweep(T0 + DAY),
    Sweep(T0 + 10 * DAY),
    _sent(T0 + 12 * DAY, samples.text_message("wamid.b", T0 + 12 * DAY, wa_id=USER,
                                              user_id=BSUID)),
]  # fmt: skip
# both ids holding a state of their own when the number changes: the change's links, taken in
# sorted order, merge the wa_id's state into the new key first, then the BSUID's
BOTH_MOVED_BY_A_CHANGE: list[Delivery | Sweep] = [
    _sent(T0, samples.text_message("wamid.a", T0, wa_id=USER)),
    _sent(T0 + 60, samples.text_message("wamid.b", T0 + 60, wa_id=None, user_id=BSUID)),
    _sent(T0 + 120, samples.number_change("wamid.c", T0 + 120, USER, NEW_USER,
                                          old_user_id=BSUID, new_user_id=NEW_BSUID)),
]  # fmt: skip


@settings(max_examples=examples(60))
@given(timelines_of_ids().flatmap(with_sweeps))
@example(FORGOTTEN_THEN_LINKED)
@example(BOTH_MOVED_BY_A_CHANGE)
def test_the_engine_links_a_users_ids_and_sweeps_between_deliveries_as_the_model_does(
    services: Services, steps: list[Delivery | Sweep]
) -> None:
    """The user named by their wa_id, their BSUID or both, and changing ids on the way: the
    engine links their keys and merges their states as the model does, and sweeps between
    deliveries; then everything closes, and the history is forgotten."""
    last = max(s.arrives for s in steps if isinstance(s, Delivery))
    asyncio.run(lockstep(db3(services), [*steps, Sweep(last + DAY), Sweep(last + 10 * DAY)]))


def test_a_batch_after_a_link_moved_a_remembered_home_applies_in_order_in_one_write(
    services: Services,
) -> None:
    """Found by the property above: a link that moves a user's home away must also make
    this process forget what it remembered (engine/reads.py) of the user's other keys.

    The first body links the wa_id's key to the BSUID's and applies an event asked by the
    wa_id's key: the store remembers that key as living under the BSUID's. The second body's
    ``user_changed_user_id`` merges the BSUID's key into the new BSUID's. Before the fix
    ``link_many`` forgot only the keys it wrote an alias for, so the wa_id's key still
    pointed at the old home: its event ran on that, was refused by ``commit.lua`` and ran
    again, alone, after the others, with an extra ``service_window.extended`` published and
    the new home written twice. Now every key remembered as living at a home a link merged
    away is forgotten (``Reads.forget_homes``), and the batch's events run in order, in one
    write, as the model (and the engine with nothing remembered) has them."""
    steps: list[Delivery | Sweep] = [
        _sent(T0,
              samples.text_message("wamid.1", T0, wa_id=USER, user_id=BSUID),  # links them
              samples.text_message("wamid.2", T0 + 60, wa_id=USER)),  # asked by the wa_id
        _sent(T0 + 400,
              samples.text_message("wamid.3", T0 + 300, wa_id=USER),
              samples.text_message("wamid.4", T0 + 250, wa_id=None, user_id=BSUID),
              samples.user_id_change("wamid.5", T0 + 400, BSUID, LATEST_BSUID)),
    ]  # fmt: skip
    asyncio.run(lockstep(db3(services), steps))


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
