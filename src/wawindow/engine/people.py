"""People in Redis: consent and erasure, through the conversations' read-decide-write path
(:meth:`wawindow.engine.documents.DocumentStore.run`), so order, repeats and replays behave
as they do for webhooks.

- A person's document (:mod:`wawindow.rules.people`) lives at ``{ww:n}:k:<waba>:<user>``,
  without expiry.
- An erasure first turns every conversation of the person at the WABA into a tombstone (on
  every number of the WABA the worker has seen, under each id the person is known by: the
  one asked, and the wa_id or BSUID their conversations name), drops the links between those
  ids, then erases the person's documents under each id. Each step can be repeated.
- Consent on file joins the person's recorded decisions under each of their ids with the
  opt-outs their conversations learned from webhooks: one history.
- Before anything is erased, the opt-outs in force are kept as a suppression under keyed
  hashes of the person's ids (:mod:`wawindow.engine.suppression`), and the erasure marks
  (``ww:erased``, :mod:`wawindow.engine.marks`) name keyed hashes too, never plain ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from wawindow import keys
from wawindow.contracts import DAY, ChangeKind
from wawindow.engine.documents import Applied, Read
from wawindow.engine.marks import ErasureMarks
from wawindow.engine.store import WindowStore
from wawindow.engine.suppression import Suppressions, record_of
from wawindow.errors import EventRejected
from wawindow.keys import conversation_key
from wawindow.redis.connection import text, translated
from wawindow.rules import engine, people
from wawindow.rules.consent import Decision, from_webhooks
from wawindow.rules.engine import EventResult
from wawindow.rules.people import Person
from wawindow.rules.state import State
from wawindow.rules.suppression import Suppression, merge

log = structlog.get_logger("wawindow.people")


@dataclass(slots=True)
class PeopleReport:
    """Per record its result (or the error that kept it from being applied), the writes
    whose events are to be published, the consent records to tombstone on Kafka, and the
    suppression records to put there."""

    results: list[EventResult | Exception]
    applied: list[Applied] = field(default_factory=list)
    tombstones: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OnFile:
    """What the tracker holds of a person at a WABA."""

    decisions: list[Decision]  # recorded and webhook-borne, oldest first
    ids: list[str]  # the ids they are known by
    conversations: int  # conversations with facts (not tombstones)

    @property
    def known(self) -> bool:
        return bool(self.decisions or self.conversations)


class People:
    """Consent and erasure of people, on the conversations' store."""

    def __init__(self, store: WindowStore, suppressions: Suppressions | None = None) -> None:
        """``suppressions``: needed to erase (the worker), not to read consent."""
        self._store = store
        self._redis = store.redis
        self._suppressions = suppressions
        self._marks: ErasureMarks | None = None
        self._noted: dict[str, tuple[str, float]] = {}  # number -> (WABA, when written)
        self._indexed = False  # every noted number is in its WABA's set (_index_numbers)

    @property
    def suppressions(self) -> Suppressions | None:
        return self._suppressions

    # -- the numbers of a WABA ----------------------------------------------------------------

    @translated
    async def note_numbers(self, pairs: Iterable[tuple[Any, Any]], now: float) -> None:
        """Remember which WABA each phone number id belongs to: written once a day per
        process, and kept as long as the counts after the last write."""
        new: dict[Any, Any] = {
            n: w
            for n, w in pairs
            if isinstance(n, str)
            and isinstance(w, str)
            and n
            and w
            and (self._noted.get(n, ("", 0.0))[0] != w or now - self._noted[n][1] > DAY)
        }
        if new:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hset(keys.NUMBERS, mapping=new)
            pipe.expire(keys.NUMBERS, self._store.retention_s)
            self._into_waba_sets(pipe, new.items())
            await pipe.execute()
            self._noted.update({n: (w, now) for n, w in new.items()})

    @translated
    async def numbers_of(self, waba_id: str) -> list[str]:
        """The phone number ids whose WABA is ``waba_id`` now: the WABA's own set, checked
        against NUMBERS (a number may have moved to another WABA since)."""
        await self._index_numbers()
        candidates = sorted(text(n) for n in await self._redis.smembers(keys.waba_numbers(waba_id)))
        if not candidates:
            return []
        wabas = await self._redis.hmget(keys.NUMBERS, candidates)
        return [
            n
            for n, w in zip(candidates, wabas, strict=True)
            if w is not None and text(w) == waba_id
        ]

    async def _index_numbers(self) -> None:
        """Once per store: put every number noted before the WABAs' sets were kept into its
        WABA's set (an erasure must find all of a person's conversations)."""
        if self._indexed or await self._redis.get(keys.NUMBERS_INDEXED):
            self._indexed = True
            return
        noted = await self._redis.hgetall(keys.NUMBERS)
        pipe = self._redis.pipeline(transaction=False)
        self._into_waba_sets(pipe, ((text(n), text(w)) for n, w in noted.items()))
        pipe.set(keys.NUMBERS_INDEXED, "1", ex=self._store.retention_s)
        await pipe.execute()
        self._indexed = True

    def _into_waba_sets(self, pipe: Any, pairs: Iterable[tuple[str, str]]) -> None:
        """Queue on ``pipe``: each (number, WABA) into the WABA's set, kept as long as
        NUMBERS."""
        for number, waba in pairs:
            pipe.sadd(keys.waba_numbers(waba), number)
            pipe.expire(keys.waba_numbers(waba), self._store.retention_s)

    @translated
    async def waba_of(self, phone_number_id: str) -> str | None:
        raw = await self._redis.hget(keys.NUMBERS, phone_number_id)
        return text(raw) if raw is not None else None

    # -- erased people ------------------------------------------------------------------------

    def _suppressing(self) -> Suppressions:
        if self._suppressions is None:
            raise EventRejected(
                "no WAWINDOW_SUPPRESSION_KEY: an erasure would lose the person's opt-outs"
            )
        return self._suppressions

    @property
    def marks(self) -> ErasureMarks:
        """Which webhooks belong to an erased person (needs the suppression key)."""
        if self._marks is None:
            self._marks = ErasureMarks(self._redis, self._suppressing(), self._store.retention_s)
        return self._marks

    # -- reading ------------------------------------------------------------------------------

    @translated
    async def person(self, waba_id: str, user: str) -> Person:
        raw = await self._redis.get(keys.PersonKeys.of(waba_id, user).state)
        return Person.decode(text(raw).split(" ", 1)[1] if raw else None)

    @translated
    async def on_record(self, records: Sequence[Mapping[str, Any]]) -> set[str]:
        """The ids of the consent changes among ``records`` that are on record already:
        applied to the person's history, or forgotten by an erasure (one round trip)."""
        people = sorted({(str(r["waba_id"]), str(r["user"])) for r in records})
        pipe = self._redis.pipeline(transaction=False)
        for waba_id, user in people:
            pipe.get(keys.PersonKeys.of(waba_id, user).state)
        known: set[str] = set()
        for raw in await pipe.execute():
            if raw:
                person = Person.decode(text(raw).split(" ", 1)[1])
                known |= {d.id for d in person.history} | set(person.forgotten)
        return {str(r["event_id"]) for r in records} & known

    @translated
    async def conversations(self, users: Iterable[str], numbers: Iterable[str]) -> dict[str, State]:
        """The conversations of ``users`` on ``numbers``, by the key they live under."""
        asked = [conversation_key(n, u) for n in numbers for u in users]
        where = await self._store.resolve(asked)
        return await self._store.conversations(list(dict.fromkeys(where.values())))

    @translated
    async def on_file(
        self, waba_id: str, user: str, numbers: Sequence[str] | None = None
    ) -> OnFile:
        """Consent on file for a person: their recorded decisions under each id they are
        known by, and the webhook-borne opt-outs of their conversations on ``numbers``
        (default: every number of the WABA)."""
        if numbers is None:
            numbers = await self.numbers_of(waba_id)
        convs = await self.conversations([user], numbers)
        ids = {user} | {i for s in convs.values() for i in (s.wa_id, s.user_id) if i}
        more = ids - {user}
        if more:
            convs |= await self.conversations(more, numbers)
        decisions: list[Decision] = []
        for person_id in sorted(ids):
            decisions += (await self.person(waba_id, person_id)).history
        for s in convs.values():
            decisions += from_webhooks(
                {k: (d.at, d.value, d.reason) for k, d in s.decisions.items()}
            )
        decisions.sort(key=lambda d: (d.at, d.id))
        facts = sum(1 for s in convs.values() if s.inbound or s.messages or s.decisions)
        return OnFile(decisions, sorted(ids), facts)

    # -- applying consent-events --------------------------------------------------------------

    @translated
    async def apply(self, records: Sequence[Mapping[str, Any]], now: int) -> PeopleReport:
        """Apply consent changes and erasures (checked records), per person in order."""
        report = PeopleReport([EventRejected("not applied")] * len(records))
        todo: list[tuple[int | None, dict[str, Any]]] = []
        for i, rec in enumerate(records):
            if rec["kind"] == ChangeKind.SUPPRESSION:
                try:
                    report.tombstones += await self._suppressing().apply([rec], now)
                    report.results[i] = EventResult()
                except (EventRejected, ValueError, TypeError, KeyError) as exc:
                    report.results[i] = exc
                continue
            if rec["kind"] != ChangeKind.ERASURE:
                todo.append((i, dict(rec)))
                continue
            waba_id, user = str(rec["waba_id"]), str(rec["user"])
            ids: list[str] = [user]
            applied: list[Applied] = []
            try:
                if rec["event_id"] not in (await self.person(waba_id, user)).erasures:
                    # a replayed erasure is not done again: the person may have come back since
                    ids, applied, kept = await self._erase(waba_id, user, int(rec["at"]), now)
                else:  # its suppression record again: a crash may have come before its publish
                    kept = next(
                        (
                            e
                            for e in await self._suppressing().entries(waba_id, [user])
                            if e.erased_at == int(rec["at"])
                        ),
                        None,
                    )
            except (EventRejected, ValueError, TypeError, KeyError) as exc:
                report.results[i] = exc
                continue
            if kept is not None:
                report.records.append(record_of(kept))
            report.applied += applied
            todo.append((i, {**rec, "ids": ids}))
            for other in ids:  # the same person's documents under their other ids, quietly
                if other != rec["user"]:
                    quiet = {**rec, "user": other, "event_id": f"{rec['event_id']}:{other}"}
                    todo.append((None, {**quiet, "linked": True}))
        groups: dict[str, list[int]] = {}
        for n, (_, rec) in enumerate(todo):
            key = keys.person_key(str(rec["waba_id"]), str(rec["user"]))
            groups.setdefault(key, []).append(n)

        def run(r: Read, asked: list[str]) -> people.PersonOutcome:
            ns = sorted(n for key in asked for n in groups[key])
            return people.apply(r.state, r.key, [todo[n][1] for n in ns], now)

        done = await self._store.run(list(groups), run, now, durable=True, decode=Person.decode)
        for key, result in done.items():
            ns = groups[key]
            if isinstance(result, Exception):
                for n in ns:
                    if (j := todo[n][0]) is not None:
                        report.results[j] = result
                continue
            outcome, written = result
            report.applied.append(written)
            report.tombstones += outcome.tombstones
            for n, res in zip(ns, outcome.results, strict=True):
                if (j := todo[n][0]) is not None:
                    report.results[j] = res
        report.tombstones = list(dict.fromkeys(report.tombstones))
        return report

    async def _erase(
        self, waba_id: str, user: str, at: int, now: int
    ) -> tuple[list[str], list[Applied], Suppression | None]:
        """Keep the opt-outs in force as a suppression, then erase the conversations;
        returns the ids erased, the writes to publish and the suppression kept (None: the
        person had no opt-out in force)."""
        sup = self._suppressing()
        on_file = await self.on_file(waba_id, user)
        before = await sup.entries(waba_id, on_file.ids)
        entry = sup.at_erasure(waba_id, at, on_file.ids, on_file.decisions, before)
        kept, _ = await sup.keep(entry, now)  # before anything is erased: a crash loses nothing
        ids, applied = await self._erase_conversations(waba_id, user, at, now)
        more = set(ids) - set(on_file.ids)
        if kept is not None and more:  # ids only the links named: theirs too
            wider = merge(kept, Suppression(waba_id, kept.erased_at, sup.digests(waba_id, more)))
            kept, _ = await sup.keep(wider, now)
        return ids, applied, kept

    async def _erase_conversations(
        self, waba_id: str, user: str, at: int, now: int
    ) -> tuple[list[str], list[Applied]]:
        """Make every conversation of the person at the WABA a tombstone; returns the ids
        they were known by and the writes to publish (what earlier writes left pending).

        In an order that can be repeated: find the ids (from the conversations and from the
        keys the links lead to), mark them erased (from then on their older webhooks are
        dropped), erase where the links lead, drop the links, then erase each id's own key."""
        numbers = await self.numbers_of(waba_id)
        ids = {user}
        found: set[str] = set()
        targets: set[str] = set()
        for _ in range(3):  # the ids the conversations name, and theirs
            asked = {conversation_key(n, u) for n in numbers for u in ids} - found
            if not asked:
                break
            found |= asked
            where = await self._store.resolve(sorted(asked))
            targets |= set(where.values())
            for key in set(where.values()):
                ids.add(key.split(":", 1)[1])
                try:
                    s = await self._store.conversation(key)
                except (ValueError, TypeError, KeyError) as exc:
                    raise EventRejected(
                        f"the stored state of {key} cannot be read: {exc!r}"
                    ) from None
                ids |= {i for i in (s.wa_id, s.user_id) if i}
        found |= targets | {conversation_key(n, u) for n in numbers for u in ids}
        await self.marks.mark(waba_id, sorted(ids), at)
        if not found:
            return sorted(ids), []
        rules = self._store.rules

        def run(r: Read, _: list[str]) -> engine.Outcome:
            return engine.erase(r.state, r.key, at, now, rules)

        applied: list[Applied] = []
        for step in (sorted(targets), None, sorted(found)):
            if step is None:  # the links, once what they lead to is a tombstone
                await self._redis.delete(*(keys.alias(k) for k in sorted(found)))
                await self._store.links.moved()  # every process drops the links it holds
                continue
            done = await self._store.run(step, run, now, durable=True)
            for key, result in done.items():
                if isinstance(result, Exception):
                    raise EventRejected(f"cannot erase {key}: {result}")
                applied.append(result[1])
        log.info("people.erased", conversations=len(found), numbers=len(numbers))
        return sorted(ids), applied
