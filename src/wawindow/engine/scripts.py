"""Running the engine's Lua scripts (``lua/``): loaded once (again after a NOSCRIPT), a
batch's calls in one pipeline on a single Redis (ending with the durability wait), or
concurrently on a Cluster, which cannot pipeline scripts; a failed call's error in its place.

A batch's writes are one ``commit.lua`` call (:meth:`Scripts.commit`, one per shard on a
Cluster), each document given as a :class:`Commit`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from wawindow import keys
from wawindow.errors import StoreNotDurable
from wawindow.redis.connection import AnyRedis, store_error, translated

_LUA = importlib.resources.files(__package__) / "lua"
READ = (_LUA / "read.lua").read_text()
# the scripts that write a deadline keep the shard's summary with summary.lua's function
_SUMMARY = (_LUA / "summary.lua").read_text()
COMMIT = _SUMMARY + (_LUA / "commit.lua").read_text()
DEADLINE = _SUMMARY + (_LUA / "deadline.lua").read_text()
# Redis Cluster does not pipeline scripts: conversations are then read and written
# concurrently, at most this many at a time.
CLUSTER_CONCURRENCY = 64
# document keys whose Redis key names are remembered (about 600 bytes each)
KEYS_REMEMBERED = 50_000

log = structlog.get_logger("wawindow.store")
Call = tuple[str, list[str], list[Any]]  # (script name, keys, args)


@dataclass(frozen=True, slots=True)
class Commit:
    """What ``commit.lua`` writes of one document: ``key``'s new ``document`` (``b""``: forget
    it) if Redis still holds ``version`` (and, when given, exactly the ``remembered`` string),
    its window events into the outbox, its next deadline and its counter changes."""

    key: str
    version: str  # the version read ("0": none)
    document: bytes  # b"": forget the document
    keep_until: int  # when it may be forgotten, once it has no deadline (0: never)
    due: int | None  # its next deadline
    transitions: bytes  # the window events as a JSON array (b"": none)
    remembered: bytes = b""  # the whole stored string the rules ran on, when not read
    counters: tuple[tuple[int, str, int], ...] = ()  # (UTC day, field, delta)

    def keys(self) -> tuple[str, ...]:
        """Its six keys to commit.lua (all in its shard)."""
        return written_keys(self.key).keys

    def args(self) -> list[Any]:
        """Its arguments to commit.lua, the count first."""
        out: list[Any] = [
            self.key, self.version, self.document, self.keep_until,
            "" if self.due is None else self.due, written_keys(self.key).counters,
            self.transitions, self.remembered,
        ]  # fmt: skip
        for day, field, delta in self.counters:
            out += (day, field, delta)
        return [len(out), *out]


@dataclass(frozen=True, slots=True)
class WrittenKeys:
    """The keys a write of one document touches: its shard, commit.lua's six keys and the
    prefix of the shard's counters."""

    shard: int
    keys: tuple[str, ...]
    counters: str


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def written_keys(key: str) -> WrittenKeys:
    """:class:`WrittenKeys` of a document key, remembered for the keys written lately (a
    worker writes the same conversations again and again; the names never change)."""
    state_key, shard = keys.document_keys(key)
    return WrittenKeys(
        shard,
        (
            state_key, keys.deadline_part(shard, keys.deadline_part_of(key)),
            keys.outbox(shard), keys.outbox_queue(shard), keys.alias(key),
            keys.deadline_summary(shard),
        ),
        keys.counters(shard, ""),
    )  # fmt: skip


def _ours(reply: Any) -> Any:
    """A reply, with a Redis error in the project's tree. Redis itself refusing (full,
    read-only, loading, failing over …) is not the event's fault: raised, so the worker
    retries the batch instead of dead-lettering its events."""
    if isinstance(reply, RedisError):
        error = store_error(reply)
        if error.retriable:
            raise error from reply
        return error
    return reply


@dataclass(frozen=True, slots=True)
class Deadline:
    """What ``deadline.lua`` does in one part of a shard's deadline index: set aside the
    conversation ``key`` (its deadline moved to ``until`` if it is still one due at
    ``due_at``, its state given a TTL of ``keep_s`` if it has none), or with no ``key`` only
    mend the part's entry in the shard's summary."""

    shard: int
    part: int
    key: str = ""
    until: int = 0
    keep_s: int = 0
    due_at: int = 0

    @classmethod
    def set_aside(cls, key: str, until: int, keep_s: int, due_at: int) -> Deadline:
        shard = keys.shard_of(key)
        return cls(shard, keys.deadline_part_of(key), key, until, keep_s, due_at)

    def call(self) -> Call:
        where = [keys.deadline_part(self.shard, self.part), keys.deadline_summary(self.shard)]
        if self.key:
            where.append(keys.ConversationKeys.of(self.key).state)
        return ("deadline", where, [self.key, self.until, self.keep_s, self.due_at])


class Scripts:
    """The engine's scripts on one client, and how durable their writes are made:
    ``durability`` as :class:`~wawindow.engine.store.EngineConfig` names it."""

    def __init__(self, redis: AnyRedis, durability: str, durability_timeout_ms: int) -> None:
        self._redis = redis
        self._cluster = isinstance(redis, RedisCluster)
        self._durability_mode = durability
        self._durability_timeout_ms = durability_timeout_ms
        self._sha: dict[str, str] = {}
        self._wait: tuple[Any, ...] | None = None  # decided at load

    @translated
    async def load(self) -> None:
        """Load the scripts (on every primary of a cluster); done again after a NOSCRIPT.
        The first time, decide how durable writes are made (``durability``)."""
        for name, source in (("read", READ), ("commit", COMMIT), ("deadline", DEADLINE)):
            self._sha[name] = str(await self._redis.script_load(source))
        if self._wait is None:
            self._wait = await self._durability()
            log.info("store.durability", mode=self._wait[0] if self._wait else "none")

    async def _durability(self) -> tuple[Any, ...] | tuple[()]:
        """The command that makes a batch's writes durable, appended to its pipeline (WAIT
        and WAITAOF count the writes of their own connection), or ``()`` for none."""
        mode, timeout = self._durability_mode, self._durability_timeout_ms
        if mode == "none":
            return ()
        if self._cluster:
            log.warning("store.durability_unsupported", mode=mode, reason="Redis Cluster")
            return ()
        if mode.startswith("replicas:"):
            return ("WAIT", int(mode.split(":")[1]), timeout)
        if mode == "aof":
            return ("WAITAOF", 1, 0, timeout)
        replication = await self._redis.info("replication")
        replicas = int(replication.get("connected_slaves", 0))
        if replicas:
            return ("WAIT", 1, timeout)
        server, persistence = (
            await self._redis.info("server"),
            await self._redis.info("persistence"),
        )
        version = tuple(int(v) for v in str(server.get("redis_version", "0")).split(".")[:2])
        if persistence.get("aof_enabled") in (1, "1") and version >= (7, 2):
            return ("WAITAOF", 1, 0, timeout)
        return ()

    @translated
    async def run(
        self, calls: Sequence[Call], groups: Sequence[str], *, durable: bool = False
    ) -> list[Any]:
        """Run script calls, results in call order, a failed call's exception in its place.
        One pipeline on a single Redis; ``durable``: it ends with the durability wait."""
        if not calls:
            return []
        if not self._sha:
            await self.load()
        wait = (self._wait or ()) if durable else ()
        results = await self._send(calls, groups, wait)
        if any(isinstance(r, NoScriptError) for r in results):  # the server lost its script cache
            await self.load()  # a failed-over master, whose durability may differ
            await self._decide_anew()
            wait = (self._wait or ()) if durable else ()
            results = await self._send(calls, groups, wait)
        if wait:
            try:
                self._check_durable(wait, results.pop())
            except StoreNotDurable:
                await self._decide_anew()  # replicas gone (a failover)
                raise
        return [_ours(r) for r in results]

    @translated
    async def read(self, document_keys: Sequence[str]) -> list[Any]:
        """``read.lua`` for each document key: its alias (``[alias]``) or ``[False, version,
        document, outbox field, window events]`` (the last two while they wait), or the
        error of that key alone."""
        calls: list[Call] = []
        for key in document_keys:
            state_key, shard = keys.document_keys(key)
            calls.append(("read", [state_key, keys.outbox(shard), keys.alias(key)], [key]))
        return await self.run(calls, document_keys)

    @translated
    async def deadlines(self, changes: Sequence[Deadline]) -> list[Any]:
        """``deadline.lua`` for each change: the part's earliest deadline (False: empty), or
        the error of that change alone."""
        groups = [keys.deadline_summary(c.shard) for c in changes]
        return await self.run([c.call() for c in changes], groups)

    @translated
    async def commit(
        self,
        commits: Sequence[Commit],
        now: int,
        counters_ttl_s: int,
        *,
        acks: Sequence[tuple[int, str]] = (),
        durable: bool = False,
    ) -> list[Any]:
        """Write ``commits`` with ``commit.lua``: one call on a single Redis, one per shard on
        a Cluster, and drop the acknowledged outbox entries ``acks`` (``(shard, field)``) on
        the way. Per commit 1 (written), 0 (changed since it was read: read again) or the
        error of that document alone; a call Redis refused as a whole raises."""
        if not commits and not acks:
            return []
        groups: dict[str, tuple[list[int], dict[int, list[str]]]] = {}
        for i, c in enumerate(commits):
            group = str(written_keys(c.key).shard) if self._cluster else ""
            groups.setdefault(group, ([], {}))[0].append(i)
        for shard, field in acks:
            group = str(shard) if self._cluster else ""
            groups.setdefault(group, ([], {}))[1].setdefault(shard, []).append(field)
        calls: list[Call] = []
        for indexes, acked in groups.values():
            ks: list[str] = []
            args: list[Any] = [now, counters_ttl_s, len(indexes)]
            for i in indexes:
                ks += commits[i].keys()
                args += commits[i].args()
            for shard, fields in acked.items():
                ks += (keys.outbox(shard), keys.outbox_queue(shard))
                args += (len(fields), *fields)
            calls.append(("commit", ks, args))
        replies = await self.run(calls, list(groups), durable=durable)
        out: list[Any] = [None] * len(commits)
        for (indexes, _), reply in zip(groups.values(), replies, strict=True):
            for n, i in enumerate(indexes):
                out[i] = reply if isinstance(reply, Exception) else _ours(reply[n])
        return out

    async def _send(
        self, calls: Sequence[Call], groups: Sequence[str], wait: tuple[Any, ...]
    ) -> list[Any]:
        if self._cluster:
            return await self._cluster_calls(calls, groups)
        return await self._pipeline(calls, wait)

    async def _decide_anew(self) -> None:
        """With durability ``auto``, decide again what the (perhaps new) master offers."""
        if self._durability_mode == "auto":
            self._wait = await self._durability()
            log.warning("store.durability", mode=self._wait[0] if self._wait else "none")

    async def _pipeline(self, calls: Sequence[Call], wait: tuple[Any, ...]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for sha, ks, args in calls:
            pipe.evalsha(self._sha[sha], len(ks), *ks, *args)
        if wait:
            pipe.execute_command(*wait)
        return list(await pipe.execute(raise_on_error=False))

    @staticmethod
    def _check_durable(wait: tuple[Any, ...], reply: Any) -> None:
        if isinstance(reply, Exception):
            raise StoreNotDurable(f"{wait[0]} failed: {reply}")
        confirmed = int(reply[0] if wait[0] == "WAITAOF" else reply)
        needed = 1 if wait[0] == "WAITAOF" else int(wait[1])
        if confirmed < needed:
            what = "the AOF" if wait[0] == "WAITAOF" else f"{needed} replica(s)"
            raise StoreNotDurable(f"{what} confirmed the writes within {wait[-1]} ms: {reply}")

    async def _cluster_calls(self, calls: Sequence[Call], groups: Sequence[str]) -> list[Any]:
        results: list[Any] = [None] * len(calls)
        by_group: dict[str, list[int]] = {}
        for i, group in enumerate(groups):
            by_group.setdefault(group, []).append(i)
        limit = asyncio.Semaphore(CLUSTER_CONCURRENCY)

        async def run(indexes: list[int]) -> None:
            async with limit:
                for i in indexes:
                    sha, ks, args = calls[i]
                    try:
                        results[i] = await self._redis.evalsha(self._sha[sha], len(ks), *ks, *args)
                    except RedisError as exc:
                        results[i] = exc

        await asyncio.gather(*(run(ix) for ix in by_group.values()))
        return results
