"""Conversation state in Redis: the rules (:mod:`wawindow.rules`) run here, between a read
and an atomic write.

A batch costs two round trips: one pipeline of ``read.lua`` calls (each conversation's state,
its unacknowledged window events, and whether its user now lives under another key), then,
after the rules ran in Python, one pipeline of ``commit.lua`` calls that write each
conversation's new state, outbox entry, deadline and counter changes atomically, and only if
no other process wrote that conversation since it was read (a conversation that changed is
read and run again). A conversation this process wrote itself is not read again: what it
wrote is remembered (:mod:`wawindow.engine.reads`), and the version check of ``commit.lua``
catches every write of another process since. Keys come from :mod:`wawindow.keys`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
import structlog
from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from wawindow import contracts, keys
from wawindow.contracts import CounterField
from wawindow.engine.connection import AnyRedis, text
from wawindow.engine.deadlines import DeadlineIndex, scored_up_to
from wawindow.engine.reads import Reads
from wawindow.engine.scripts import Call as _Call
from wawindow.engine.scripts import Scripts
from wawindow.errors import EventRejected, StoreConflict
from wawindow.rules import engine
from wawindow.rules.engine import EventResult, Outcome, Rules
from wawindow.rules.service_window import CSW_SECONDS as CSW
from wawindow.rules.state import State
from wawindow.rules.transitions import CounterChange, Transition

# how many alias hops are followed (a wa_id linked to a BSUID, then a number change)
MAX_ALIAS_HOPS = 4
# how often a conversation is read and written again when another process wrote it meanwhile
MAX_CONFLICTS = 8

log = structlog.get_logger("wawindow.store")


CSW_SECONDS = CSW
DAY = contracts.DAY


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The window rules' tunables, as settings name them."""

    closing_soon_offsets_s: tuple[int, ...] = (3600,)
    # Meta says 72 hours; one 2026 source says up to 7 days, so it is a setting.
    entry_point_window_s: int = 72 * 3600
    # Meta retries for up to 7 days: ids, facts and ledgers are kept a day longer.
    dedupe_ttl_s: int = 8 * DAY
    # Window state outlives its window by this much, for late webhooks and the API.
    state_grace_s: int = 8 * DAY
    counters_retention_days: int = 400
    # how durable a batch's writes must be before the worker commits its offsets:
    # "auto", "none", "aof" (WAITAOF: fsynced to the primary's AOF; Redis 7.2+ or Valkey)
    # or "replicas:<n>" (WAIT: on n replicas)
    durability: str = "auto"
    durability_timeout_ms: int = 2_000

    @property
    def rules(self) -> Rules:
        return Rules(
            closing_soon_offsets_s=tuple(sorted(self.closing_soon_offsets_s, reverse=True)),
            entry_point_window_s=self.entry_point_window_s,
            history_s=self.dedupe_ttl_s,
            grace_s=self.state_grace_s,
            opted_out_keep_s=self.counters_retention_days * DAY,
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """The window events of one write of a conversation, and the outbox fields where they
    wait until Kafka has them (``(shard, field)``)."""

    transitions: list[Transition]
    outbox: list[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Report:
    """What ``apply`` did: per event its result (or the error that kept it from being
    applied), and the writes whose window events are to be published."""

    results: list[EventResult | Exception]
    applied: list[Applied]


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


def _transitions(raw: bytes | str | None) -> list[Transition]:
    items = orjson.loads(raw) if raw else []
    return [Transition.decode(i) for i in items] if isinstance(items, list) else []


class WindowStore:
    """Conversation state in Redis: read, run the rules, write back atomically."""

    def __init__(self, redis: AnyRedis, config: EngineConfig) -> None:
        self._redis = redis
        self._config = config
        self._rules = config.rules
        self._scripts = Scripts(redis, config.durability, config.durability_timeout_ms)
        # what the sweeper asks; a state it cannot sweep is kept as long as a state's grace
        self.deadlines = DeadlineIndex(redis, self._scripts, config.state_grace_s)
        self._reads = Reads()  # what this process wrote last (engine/reads.py)

    @property
    def rules(self) -> Rules:
        return self._rules

    @property
    def retention_s(self) -> int:
        """How long counters (and what outlives a conversation) are kept."""
        return self._config.counters_retention_days * DAY

    async def load(self) -> None:
        """Load the scripts; the first time, decide how durable writes are made."""
        await self._scripts.load()

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
            calls: list[_Call] = []
            for current in todo.values():
                state_key, shard = keys.document_keys(current)
                calls.append(
                    ("read", [state_key, keys.outbox(shard), keys.alias(current)], [current])
                )
            replies = await self._scripts.run(calls, list(todo.values()))
            moved: dict[str, str] = {}
            for (key, current), reply in zip(todo.items(), replies, strict=True):
                if isinstance(reply, Exception):
                    out[key] = reply
                elif reply[0]:
                    moved[key] = text(reply[0])
                else:
                    out[key] = self._decode(current, reply, decode)
            todo = moved
        for key in todo:
            out[key] = EventRejected(f"{key}: links chained more than {MAX_ALIAS_HOPS} times")
        return out

    @staticmethod
    def _decode(key: str, reply: list[Any], decode: Callable[[Any, str], Any]) -> Read | Exception:
        try:
            pending = [
                (text(reply[i]), _transitions(reply[i + 1])) for i in range(3, len(reply), 2)
            ]
            return Read(key, text(reply[1]), decode(reply[2], key), pending)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            return EventRejected(f"the stored state of {key} cannot be read: {exc!r}")

    def _commit(self, r: Read, outcome: Written, now: int) -> tuple[_Call, Applied]:
        """The script call that writes ``outcome``, and what it publishes once written."""
        state_key, shard = keys.document_keys(r.key)
        waba, number = outcome.state.waba_id or "", r.key.split(":", 1)[0]
        totals: dict[tuple[int, str], int] = {}
        for c in outcome.counters:
            f = CounterField.at(c.at, waba, number, c.metric, c.dims)
            totals[f.day, f.encode()] = totals.get((f.day, f.encode()), 0) + c.delta
        counters = [x for (day, f), n in totals.items() if n for x in (day, f, n)]
        transitions = outcome.transitions
        field = f"{r.key}|v{int(r.version) + 1}"
        call: _Call = (
            "commit",
            [
                state_key, keys.ConversationKeys(r.key, shard).deadline_part,
                keys.outbox(shard), keys.outbox_queue(shard), keys.alias(r.key),
                keys.deadline_summary(shard),
            ],
            [
                r.key, r.version, outcome.state.encode(r.key), outcome.keep_until,
                "" if outcome.due is None else outcome.due, now,
                keys.counters(shard, ""), self._config.counters_retention_days * DAY,
                orjson.dumps([t.encode() for t in transitions]) if transitions else "",
                r.remembered, *counters,
            ],
        )  # fmt: skip
        # what an earlier write left unacknowledged (a crash before its publish) goes out too
        published = [t for _, ts in r.pending for t in ts] + transitions
        outbox = [(shard, f) for f, _ in r.pending] + ([(shard, field)] if transitions else [])
        return call, Applied(published, outbox)

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
            for r, keys_here in by_key.values():
                try:
                    runs.append((r, keys_here, rules(r, keys_here)))
                except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                    for key in keys_here:  # a bug or a state the rules cannot read: this one only
                        out[key] = EventRejected(f"the rules failed on {r.key}: {exc!r}")
            calls = [self._commit(r, outcome, now) for r, _, outcome in runs]
            replies = await self._scripts.run(
                [c for c, _ in calls], [r.key for r, _, _ in runs], durable=durable
            )
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
                state = State.decode(kept.document, kept.key)
                out[key] = Read(kept.key, kept.version, state, kept.pending, stored)
        return out

    def _wrote(self, r: Read, asked: list[str], outcome: Written, call: _Call) -> None:
        document = call[2][2]  # commit.lua's ARGV[3], the document as written
        if not document:  # forgotten: Redis has no version of it to compare with
            self._reads.forget(asked)
            return
        version = str(int(r.version) + 1)
        field = f"{r.key}|v{version}"
        outbox = (field, list(outcome.transitions)) if outcome.transitions else None
        self._reads.wrote(asked, r.key, version, document, outbox)

    # -- the engine's operations --------------------------------------------------------------

    async def apply(self, events: Sequence[tuple[str, dict[str, Any]]], now: int) -> Report:
        """Apply events ``(conversation key, event)``: per conversation, its events in order,
        one atomic write. A failing conversation fails only its own events."""
        groups: dict[str, list[int]] = {}
        for i, (key, _) in enumerate(events):
            groups.setdefault(key, []).append(i)

        def run(r: Read, asked: list[str]) -> Outcome:
            indexes = sorted(i for key in asked for i in groups[key])
            return engine.apply(r.state, r.key, [events[i][1] for i in indexes], now, self._rules)

        done = await self.run(list(groups), run, now, durable=True, remember=True)
        results: list[EventResult | Exception] = [EventRejected("not applied")] * len(events)
        # the asked keys of each write (several when users were linked): one pass, not one
        # pass over every write per write
        asked_of: dict[int, tuple[tuple[Outcome, Applied], list[str]]] = {}
        for key, result in done.items():
            if isinstance(result, Exception):
                for i in groups[key]:
                    results[i] = result
            else:
                asked_of.setdefault(id(result), (result, []))[1].append(key)
        for (outcome, _), asked in asked_of.values():
            indexes = sorted(i for k in asked for i in groups[k])
            for i, res in zip(indexes, outcome.results, strict=True):
                results[i] = res
        return Report(results, [written for (_, written), _ in asked_of.values()])

    async def close(
        self, conversation_keys: Sequence[str], now: int
    ) -> tuple[list[Applied], dict[str, Exception]]:
        """Warn or close each conversation whose time has come; safe to race with others.
        Returns the writes to publish, and the conversations that could not be swept."""

        def run(r: Read, _: list[str]) -> Outcome:
            return engine.sweep(r.state, r.key, now, self._rules)

        done = await self.run(conversation_keys, run, now)
        applied = {id(r[1]): r[1] for r in done.values() if not isinstance(r, Exception)}
        failed = {k: r for k, r in done.items() if isinstance(r, Exception)}
        return list(applied.values()), failed

    async def resolve(self, conversation_keys: Sequence[str]) -> dict[str, str]:
        """Where each key's user lives now: the key itself, or where it was linked to."""
        resolved = {k: k for k in conversation_keys}
        pending = list(resolved)
        for _ in range(MAX_ALIAS_HOPS):
            if not pending:
                break
            pipe = self._redis.pipeline(transaction=False)
            for k in pending:
                pipe.get(keys.alias(resolved[k]))
            targets = await pipe.execute()
            moved = []
            for k, target in zip(pending, targets, strict=True):
                if target is not None:
                    resolved[k] = text(target)
                    moved.append(k)
            pending = moved
        return resolved

    async def link_many(self, pairs: Sequence[tuple[str, str]], now: int) -> list[Applied]:
        """Make each ``(source, target)`` one user: the source's user (wherever it lives)
        merges into the target's, and the source points at the target from then on.

        In an order that can be repeated after a crash: merge into the target (the target
        remembers which version of the source it holds, so a repeat merges nothing twice),
        forget the source (as the version merged: a newer one is merged too), then point the
        source at the target. Pairs are linked one after
        the other, each resolved anew, so a chain of changes ends on one user.
        """
        published: list[Applied] = []
        for source, target in sorted({(s, t) for s, t in pairs if s != t}):
            where = await self.resolve([source, target])
            src, dst = where[source], where[target]
            if src != dst:
                published += await self._merge(src, dst, now)
            aliases = {k for k in (source, src) if k != dst}
            if aliases:
                pipe = self._redis.pipeline(transaction=False)
                for k in aliases:
                    pipe.set(keys.alias(k), dst, ex=self._config.counters_retention_days * DAY)
                await pipe.execute()
                self._reads.forget(aliases)
        return published

    async def _merge(self, src: str, dst: str, now: int) -> list[Applied]:
        """Merge the source into the target, then forget the source as the version that was
        merged; when another process wrote the source in between, merge its newer version
        too (the target merges each version once), so nothing of it is left behind."""
        published: list[Applied] = []
        for _ in range(MAX_CONFLICTS):
            source = (await self._read([src]))[src]
            if isinstance(source, Exception):
                raise source
            if source.state.empty and not source.pending:
                return published

            def run(r: Read, _: list[str], source: Read = source) -> Outcome:
                return engine.merge(
                    r.state, r.key, source.state, src, source.version, now, self._rules
                )

            done = (await self.run([dst], run, now, durable=True))[dst]
            if isinstance(done, Exception):
                raise done
            shard = keys.shard_of(src)
            published += [
                done[1],
                Applied(
                    [t for _, ts in source.pending for t in ts],
                    [(shard, f) for f, _ in source.pending],
                ),
            ]
            call, _ = self._commit(Read(src, source.version, State(), []), Outcome(State()), now)
            call[2][2] = ""  # forget the source, if it is still the version merged
            (forgotten,) = await self._scripts.run([call], [src])
            self._reads.forget([src])
            if isinstance(forgotten, Exception):
                raise forgotten
            if forgotten == 1:
                return published
        raise StoreConflict(f"{src} kept changing while it was linked to {dst}")

    async def acknowledge(self, entries: Sequence[tuple[int, str]]) -> None:
        """Drop outbox entries whose transitions Kafka has acknowledged."""
        if not entries:
            return
        by_shard: dict[int, list[str]] = {}
        for shard, field in entries:
            by_shard.setdefault(shard, []).append(field)
        pipe = self._redis.pipeline(transaction=False)
        for shard, fields in by_shard.items():
            pipe.hdel(keys.outbox(shard), *fields)
            pipe.zrem(keys.outbox_queue(shard), *fields)
        await pipe.execute()
        self._reads.acknowledged(field for _, field in entries)

    async def stale_outbox(self, older_than: int, limit: int = 500) -> list[Applied]:
        """Outbox entries written before ``older_than`` and never acknowledged: a process
        died between its script and its publish. Re-publishing them keeps their ids."""
        found = await scored_up_to(self._redis, keys.outbox_queue, older_than, limit)
        if not found:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for shard, field in found:
            pipe.hget(keys.outbox(shard), field)
        return [
            Applied(_transitions(raw), [where])
            for where, raw in zip(found, await pipe.execute(), strict=True)
        ]

    @property
    def redis(self) -> AnyRedis:
        """The client, for read-only views (finance's counts)."""
        return self._redis

    async def raw_state(self, key: str) -> bytes | None:
        """The stored bytes of a conversation's state, as they are (for dead-letter)."""
        raw = await self._redis.get(keys.ConversationKeys.of(key).state)
        return raw if isinstance(raw, bytes) else None

    async def conversations(self, conversation_keys: Sequence[str]) -> dict[str, State]:
        """The stored states of conversations (empty when never seen), in one pipeline."""
        pipe = self._redis.pipeline(transaction=False)
        for key in conversation_keys:
            pipe.get(keys.ConversationKeys.of(key).state)
        raws = await pipe.execute() if conversation_keys else []
        return {
            key: State.decode(text(raw).split(" ", 1)[1] if raw else None, key)
            for key, raw in zip(conversation_keys, raws, strict=True)
        }

    async def conversation(self, key: str) -> State:
        """The stored state of one conversation (empty when never seen)."""
        return (await self.conversations([key]))[key]

    async def memory(self) -> tuple[int, int]:
        """``used_memory`` and ``maxmemory``, summed over a cluster's primaries."""
        if isinstance(self._redis, RedisCluster):
            info: dict[str, Any] = await self._redis.info(
                "memory", target_nodes=RedisCluster.PRIMARIES
            )
            nodes = [v for v in info.values() if isinstance(v, dict)] or [info]
        else:
            nodes = [await self._redis.info("memory")]
        used = sum(int(n.get("used_memory", 0)) for n in nodes)
        limit = sum(int(n.get("maxmemory", 0)) for n in nodes)
        return used, limit

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """True when Redis answers PING within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await self._redis.ping())
        except (RedisError, TimeoutError):
            return False
