"""The one read-decide-write path of every stored document: a conversation's state or a
person's record (:mod:`wawindow.engine.store`, :mod:`wawindow.engine.people`).

A batch costs two round trips: one pipeline of ``read.lua`` calls (each document, its
unacknowledged window events, and whether its user now lives under another key), then,
after the rules ran in Python, one ``commit.lua`` call (one per shard on a Cluster) that
writes each new document, outbox entry, deadline and counter changes, each document
atomically and only if no other process wrote it since it was read (a document that changed
is read and run again). A conversation this process wrote itself is neither read nor decoded
again: what it wrote is remembered (:mod:`wawindow.engine.reads`), and the check of
``commit.lua`` catches every write of another process since. The same call drops the outbox
entries Kafka acknowledged since the last one (:meth:`DocumentStore.carry`). Keys come from
:mod:`wawindow.keys`.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from wawindow.contracts import CounterField
from wawindow.engine.reads import Reads
from wawindow.engine.scripts import Commit, Scripts, written_keys
from wawindow.errors import EventRejected, StoreConflict
from wawindow.redis.connection import AnyRedis, text, translated
from wawindow.rules.state import State
from wawindow.rules.transitions import CounterChange, Transition

# how many alias hops are followed (a wa_id linked to a BSUID, then a number change)
MAX_ALIAS_HOPS = 4
# how often a conversation is read and written again when another process wrote it meanwhile
MAX_CONFLICTS = 8


@dataclass(frozen=True, slots=True)
class Applied:
    """The window events of one write of a conversation, and the outbox fields where they
    wait until Kafka has them (``(shard, field)``)."""

    transitions: list[Transition]
    outbox: list[tuple[int, str]]


@dataclass(slots=True)
class Read:
    """A stored document as read: a conversation's :class:`State` or a person's
    :class:`~wawindow.rules.people.Person`, its version, and its unacknowledged events."""

    key: str
    version: str
    state: Any
    pending: list[tuple[str, list[Transition]]]
    # the whole stored string, when it was not read but remembered (engine/reads.py):
    # commit.lua then writes only if Redis still holds exactly that
    remembered: bytes = b""


class Written(Protocol):
    """What the rules made of a document, to be written back."""

    @property
    def state(self) -> Any: ...  # has encode() and waba_id

    transitions: list[Transition]
    counters: list[CounterChange]
    due: int | None
    keep_until: int


W = TypeVar("W", bound=Written)


def transitions_of(raw: bytes | str | None) -> list[Transition]:
    """The window events of an outbox entry, as stored."""
    items = orjson.loads(raw) if raw else []
    return [Transition.decode(i) for i in items] if isinstance(items, list) else []


class DocumentStore:
    """Reads documents, runs rules on them and writes them back (see the module docstring)."""

    def __init__(
        self, redis: AnyRedis, scripts: Scripts, counters_ttl_s: int, cache_bytes: int
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._counters_ttl_s = counters_ttl_s  # how long a counter is kept after a change
        self._reads = Reads(cache_bytes)  # what this process wrote last (engine/reads.py)
        self._acks: list[tuple[int, str]] = []  # acknowledged outbox entries not dropped yet
        self._acked: set[str] = set()  # their fields

    # -- reading and writing one conversation ------------------------------------------------

    async def _read(
        self, asked: Sequence[str], decode: Callable[[Any, str], Any] = State.decode
    ) -> dict[str, Read | Exception]:
        """Each key's state, where its user lives now (aliases followed)."""
        out: dict[str, Read | Exception] = {}
        todo = {k: k for k in asked}
        for _ in range(MAX_ALIAS_HOPS + 1):
            if not todo:
                break
            replies = await self._scripts.read(list(todo.values()))
            moved: dict[str, str] = {}
            for (key, current), reply in zip(todo.items(), replies, strict=True):
                if isinstance(reply, Exception):
                    out[key] = reply
                elif reply[0]:
                    moved[key] = text(reply[0])
                else:
                    out[key] = self._decode(current, reply, decode, self._acked)
            todo = moved
        for key in todo:
            out[key] = EventRejected(f"{key}: links chained more than {MAX_ALIAS_HOPS} times")
        return out

    @staticmethod
    def _decode(
        key: str, reply: list[Any], decode: Callable[[Any, str], Any], acked: Container[str]
    ) -> Read | Exception:
        """A read's reply; window events Kafka acknowledged (``acked``) are not pending."""
        try:
            pending = [
                (field, transitions_of(reply[i + 1]))
                for i in range(3, len(reply), 2)
                if (field := text(reply[i])) not in acked
            ]
            return Read(key, text(reply[1]), decode(reply[2], key), pending)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            return EventRejected(f"the stored state of {key} cannot be read: {exc!r}")

    def _commit(self, r: Read, outcome: Written) -> tuple[Commit, Applied]:
        """The write of ``outcome``, and what it publishes once written."""
        shard = written_keys(r.key).shard
        waba, number = outcome.state.waba_id or "", r.key.split(":", 1)[0]
        totals: dict[tuple[int, str], int] = {}
        for c in outcome.counters:
            f = CounterField.at(c.at, waba, number, c.metric, c.dims)
            where = (f.day, f.encode())
            totals[where] = totals.get(where, 0) + c.delta
        transitions = outcome.transitions
        commit = Commit(
            r.key,
            r.version,
            outcome.state.encode(r.key),
            outcome.keep_until,
            outcome.due,
            orjson.dumps([t.encode() for t in transitions]) if transitions else b"",
            r.remembered,
            tuple((day, f, n) for (day, f), n in totals.items() if n),
        )
        # what an earlier write left unacknowledged (a crash before its publish) goes out too
        published = [t for _, ts in r.pending for t in ts] + transitions
        field = f"{r.key}|v{int(r.version) + 1}"
        outbox = [(shard, f) for f, _ in r.pending] + ([(shard, field)] if transitions else [])
        return commit, Applied(published, outbox)

    async def run(
        self,
        asked: Sequence[str],
        rules: Callable[[Read, list[str]], W],
        now: int,
        *,
        durable: bool = False,
        decode: Callable[[Any, str], Any] = State.decode,
        remember: bool = False,
    ) -> dict[str, tuple[W, Applied] | Exception]:
        """Read the documents of ``asked`` keys (conversations, or people with ``decode``),
        run ``rules`` on each (given the state and the asked keys that live there), and write
        the outcomes back; a document that another process wrote meanwhile is read and run
        again. The one read-decide-write path of every stored document. ``remember``: use and
        keep what this process wrote (engine/reads.py; conversations the worker applies
        events to, which its partitions make its own)."""
        out: dict[str, tuple[W, Applied] | Exception] = {}
        todo = list(asked)
        remember = remember and decode == State.decode
        for _ in range(MAX_CONFLICTS):
            reads = self._remembered(todo) if remember else {}
            missing = [k for k in todo if k not in reads]
            if missing:
                reads.update(await self._read(missing, decode))
            by_key: dict[str, tuple[Read, list[str]]] = {}
            for key in todo:
                r = reads[key]
                if isinstance(r, Exception):
                    out[key] = r
                else:
                    by_key.setdefault(r.key, (r, []))[1].append(key)
            runs: list[tuple[Read, list[str], W]] = []
            try:
                for r, keys_here in by_key.values():
                    try:
                        runs.append((r, keys_here, rules(r, keys_here)))
                    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                        self._reads.forget(keys_here)  # what the rules left half changed
                        for key in keys_here:  # a bug or a state the rules cannot read
                            out[key] = EventRejected(f"the rules failed on {r.key}: {exc!r}")
                calls = [self._commit(r, outcome) for r, _, outcome in runs]
                acks, self._acks = (self._acks, []) if remember else ([], self._acks)
                try:
                    replies = await self._scripts.commit(
                        [c for c, _ in calls], now, self._counters_ttl_s, acks=acks,
                        durable=durable,
                    )  # fmt: skip
                except BaseException:
                    self._acks = acks + self._acks  # carried to the next write again
                    raise
                self._acked.difference_update(field for _, field in acks)
            except BaseException:
                # the remembered states the rules changed (or were changing, when the rules
                # raised something unforeseen) were not written: read them all again
                self._reads.forget(todo)
                raise
            todo = []
            for (r, keys_here, outcome), (call, applied), reply in zip(
                runs, calls, replies, strict=True
            ):
                if isinstance(reply, Exception):
                    self._reads.forget(keys_here)
                    for key in keys_here:
                        out[key] = reply
                elif reply == 0:
                    self._reads.forget(keys_here)
                    todo += keys_here  # written by another process since the read: again
                else:
                    if remember:
                        self._wrote(r, keys_here, outcome, call)
                    done = (outcome, applied)
                    for key in keys_here:
                        out[key] = done
            if not todo:
                return out
        raise StoreConflict(f"{len(todo)} conversations kept changing under this worker")

    def _remembered(self, asked: Sequence[str]) -> dict[str, Read | Exception]:
        """The conversations of ``asked`` as this process last wrote them (engine/reads.py)."""
        out: dict[str, Read | Exception] = {}
        for key in asked:
            kept = self._reads.get(key)
            if kept is not None:
                stored = f"{kept.version} ".encode() + kept.document
                out[key] = Read(kept.key, kept.version, kept.state, kept.pending, stored)
        return out

    def _wrote(self, r: Read, asked: list[str], outcome: Written, commit: Commit) -> None:
        if not commit.document:  # forgotten: Redis has no version of it to compare with
            self._reads.forget(asked)
            return
        version = str(int(r.version) + 1)
        field = f"{r.key}|v{version}"
        outbox = (field, list(outcome.transitions)) if outcome.transitions else None
        self._reads.wrote(asked, r.key, version, commit.document, outbox, outcome.state)

    # -- outbox entries Kafka acknowledged ------------------------------------------------

    def carry(self, entries: Sequence[tuple[int, str]]) -> None:
        """Outbox entries ``(shard, field)`` whose window events Kafka has acknowledged: they
        are dropped by the next write of events (the worker's next batch), or by
        :meth:`flush_acknowledged` when the worker is idle, well before the stale-outbox
        sweep would publish them again."""
        self._acks += entries
        self._acked.update(field for _, field in entries)
        self._reads.acknowledged(field for _, field in entries)

    @property
    def carried(self) -> int:
        """Acknowledged outbox entries waiting to be dropped."""
        return len(self._acks)

    @translated
    async def flush_acknowledged(self) -> None:
        """Drop the carried acknowledged entries now (an idle worker, a stopping one)."""
        if not self._acks:
            return
        acks, self._acks = self._acks, []
        try:
            await self._scripts.commit([], 0, self._counters_ttl_s, acks=acks)
        except BaseException:
            self._acks = acks + self._acks
            raise
        self._acked.difference_update(field for _, field in acks)
