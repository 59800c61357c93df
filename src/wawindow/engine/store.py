"""Conversation state in Redis, behind typed methods over the Lua scripts in ``lua/``.

Each update of a conversation is one atomic script call; a batch of them is one pipeline, so
a batch of events costs one round trip. Keys come from :mod:`wawindow.keys`.
"""

from __future__ import annotations

import asyncio
import importlib.resources
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wawindow import keys
from wawindow.errors import EventRejected

_LUA = importlib.resources.files(__package__) / "lua"
_COMMON = (_LUA / "common.lua").read_text()
APPLY = _COMMON + (_LUA / "apply.lua").read_text()
CLOSE = _COMMON + (_LUA / "close.lua").read_text()
LINK = _COMMON + (_LUA / "link.lua").read_text()
# how many alias hops are followed (a wa_id linked to a BSUID, then a number change)
MAX_ALIAS_HOPS = 4
# Redis Cluster does not pipeline scripts: conversations are then updated concurrently, each
# one's events in order, at most this many conversations at a time.
CLUSTER_CONCURRENCY = 64

AnyRedis = Redis | RedisCluster
_Call = tuple[str, list[str], list[Any]]  # (script sha, keys, args)


async def connect(url: str) -> AnyRedis:
    """A client for ``url``: a cluster client when the server is a Redis Cluster node."""
    client = Redis.from_url(url)
    try:
        info = await client.info("cluster")
    except RedisError:
        await client.aclose()
        raise
    if info.get("cluster_enabled") in (1, "1"):
        await client.aclose()
        return RedisCluster.from_url(url)
    return client


CSW_SECONDS = 24 * 3600
DAY = 86_400


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The window rules' tunables."""

    closing_soon_offsets_s: tuple[int, ...] = (3600,)
    # Meta says 72 hours; one 2026 source says up to 7 days, so it is a setting.
    entry_point_window_s: int = 72 * 3600
    # Meta retries for up to 7 days: ids and ledgers are kept a day longer.
    dedupe_ttl_s: int = 8 * DAY
    # Window state outlives its window by this much, for late webhooks and the API.
    state_grace_s: int = 8 * DAY
    counters_retention_days: int = 400

    @property
    def offsets_arg(self) -> str:
        return ",".join(str(o) for o in sorted(self.closing_soon_offsets_s, reverse=True))


@dataclass(frozen=True, slots=True)
class Transition:
    """A window transition as the scripts report it; :mod:`wawindow.engine.cloudevents` turns
    it into the published event."""

    type: str
    id: str
    time: int
    key: str
    data: dict[str, Any]
    waba_id: str | None
    phone_number_id: str | None
    user_id: str | None
    wa_id: str | None

    @classmethod
    def from_script(cls, item: dict[str, Any]) -> Transition:
        return cls(
            type=item["type"],
            id=item["id"],
            time=int(item["time"]),
            key=item["key"],
            data=item["data"],
            waba_id=item.get("waba"),
            phone_number_id=item.get("pn"),
            user_id=item.get("user_id"),
            wa_id=item.get("wa_id"),
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """What one event did: its transitions, and where they wait in the outbox until Kafka
    has them."""

    transitions: list[Transition]
    outbox: tuple[int, str] | None
    # what the event repeated or corrected: duplicate, out_of_order, csw_correction, disagreement
    notes: tuple[str, ...] = ()


_TRANSIENT_ERRORS = (
    RedisConnectionError, RedisTimeoutError, OutOfMemoryError, ReadOnlyError, BusyLoadingError,
    TryAgainError, ClusterDownError, MasterDownError, MovedError, AskError,
)  # fmt: skip
_TRANSIENT_PREFIXES = (
    "OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
)  # fmt: skip


def _transient(exc: RedisError) -> bool:
    """A refusal by Redis that passes (as opposed to a script failing on a bad event)."""
    return isinstance(exc, _TRANSIENT_ERRORS) or str(exc).startswith(_TRANSIENT_PREFIXES)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _transitions(items: Any) -> list[Transition]:
    """Decoded transitions of a script; cjson encodes an empty Lua table as {}, not []."""
    return [Transition.from_script(i) for i in items] if isinstance(items, list) else []


class WindowStore:
    """Typed access to conversation state; one instance per Redis client."""

    def __init__(self, redis: AnyRedis, config: EngineConfig) -> None:
        self._redis = redis
        self._config = config
        self._cluster = isinstance(redis, RedisCluster)
        self._sha: dict[str, str] = {}
        self._offsets = config.offsets_arg

    async def load(self) -> None:
        """Load the scripts (on every primary of a cluster); done again after a NOSCRIPT.
        The settings are written into apply.lua as constants, so calls stay small."""
        constants = {
            "@CSW_SECONDS@": CSW_SECONDS,
            "@FEP_SECONDS@": self._config.entry_point_window_s,
            "@OFFSETS@": self._offsets,
            "@GRACE_SECONDS@": self._config.state_grace_s,
            "@DEDUPE_SECONDS@": self._config.dedupe_ttl_s,
            "@COUNTER_SECONDS@": self._config.counters_retention_days * DAY,
        }
        apply = APPLY
        for placeholder, value in constants.items():
            apply = apply.replace(placeholder, str(value))
        for name, source in (("apply", apply), ("close", CLOSE), ("link", LINK)):
            self._sha[name] = str(await self._redis.script_load(source))

    async def _scripts(self, calls: Sequence[_Call], groups: Sequence[str]) -> list[Any]:
        """Run script calls: in order within a group (a conversation), results in call
        order, a failed call's exception in its place. One pipeline on a single Redis."""
        if not self._sha:
            await self.load()
        results = await (
            self._scripts_cluster(calls, groups) if self._cluster else self._scripts_pipeline(calls)
        )
        if any(isinstance(r, NoScriptError) for r in results):  # the server lost its script cache
            await self.load()
            results = await (
                self._scripts_cluster(calls, groups)
                if self._cluster
                else self._scripts_pipeline(calls)
            )
        # Redis itself refusing (full, read-only, loading, failing over …) is not the event's
        # fault: raise, so the worker retries the batch instead of dead-lettering its events
        for r in results:
            if isinstance(r, RedisError) and _transient(r):
                raise r
        return results

    async def _scripts_pipeline(self, calls: Sequence[_Call]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for sha, ks, args in calls:
            pipe.evalsha(self._sha[sha], len(ks), *ks, *args)
        return list(await pipe.execute(raise_on_error=False))

    async def _scripts_cluster(self, calls: Sequence[_Call], groups: Sequence[str]) -> list[Any]:
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

    async def apply(
        self, events: Sequence[tuple[str, str, bytes]], now: int
    ) -> list[Applied | Exception]:
        """Apply events ``(conversation key, event id, encoded event)``: one script call per
        conversation with its events in order, one pipeline for the lot. A failing event
        yields its exception in its place, so one poison record never costs the others."""
        groups: dict[str, list[int]] = {}
        for i, (key, _, _) in enumerate(events):
            groups.setdefault(key, []).append(i)
        calls: list[_Call] = []
        for key, indexes in groups.items():
            k = keys.ConversationKeys.of(key)
            payload = b"[" + b",".join(events[i][2] for i in indexes) + b"]"
            calls.append(
                (
                    "apply",
                    [
                        k.state, k.messages,
                        keys.deadlines(k.shard), keys.outbox(k.shard), keys.outbox_queue(k.shard),
                    ],
                    [payload, now, keys.counters(k.shard, ""), key],
                )
            )  # fmt: skip
        results = await self._scripts(calls, list(groups))
        out: list[Applied | Exception] = [EventRejected("not applied")] * len(events)
        for (key, indexes), result in zip(groups.items(), results, strict=True):
            if isinstance(result, Exception):
                for i in indexes:
                    out[i] = result
                continue
            shard = keys.shard_of(key)
            for i, item in zip(indexes, orjson.loads(result), strict=True):
                if isinstance(item, dict) and "error" in item:
                    out[i] = EventRejected(str(item["error"]))
                    continue
                transitions, notes = _transitions(item.get("t")), item.get("n")
                where = (shard, f"{key}|{events[i][1]}") if transitions else None
                out[i] = Applied(
                    transitions, where, tuple(notes) if isinstance(notes, list) else ()
                )
        return out

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
                    resolved[k] = _str(target)
                    moved.append(k)
            pending = moved
        return resolved

    async def link_many(self, pairs: Sequence[tuple[str, str]], now: int) -> int:
        """Make each ``(source, target)`` one user: merge the source key's state into the
        target's, then point the source at the target. Returns how many links were new.

        The steps run in an order that can be repeated after a crash: merge (idempotent),
        alias, then delete the source's keys. Each step is one round trip for the whole
        batch; a chain within the batch (a source that is also a target, or one source with
        two targets) is linked one pair at a time, so each merge lands where the one before
        moved the user.
        """
        todo = sorted({(s, t) for s, t in pairs if s != t})
        if not todo:
            return 0
        targets = await self.resolve([t for _, t in todo])
        todo = [(s, targets[t]) for s, t in todo if s != targets[t]]
        pipe = self._redis.pipeline(transaction=False)
        for source, _ in todo:
            pipe.get(keys.alias(source))
        existing = await pipe.execute()
        todo = [
            (source, target)
            for (source, target), current in zip(todo, existing, strict=True)
            if current is None or _str(current) != target
        ]
        sources = {source for source, _ in todo}
        if len(sources) < len(todo) or any(target in sources for _, target in todo):
            # a chain: each pair on its own, its target resolved again after the one before
            return sum([await self.link_many([pair], now) for pair in todo])
        if todo:
            await self._link(now, todo)
        return len(todo)

    async def _link(self, now: int, todo: Sequence[tuple[str, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for source, _ in todo:
            src = keys.ConversationKeys.of(source)
            pipe.hgetall(src.state)
            pipe.hgetall(src.messages)
        read = await pipe.execute()
        calls: list[_Call] = []
        groups: list[str] = []
        for i, (_, target) in enumerate(todo):
            state, ledger = read[2 * i], read[2 * i + 1]
            if not (state or ledger):
                continue  # a key never written: nothing to merge
            dst = keys.ConversationKeys.of(target)
            calls.append(
                (
                    "link",
                    [dst.state, dst.messages, keys.deadlines(dst.shard)],
                    [
                        orjson.dumps({_str(k): _str(v) for k, v in state.items()}),
                        orjson.dumps({_str(k): _str(v) for k, v in ledger.items()}),
                        target, self._offsets, self._config.dedupe_ttl_s,
                        now, self._config.state_grace_s,
                    ],
                )
            )  # fmt: skip
            groups.append(target)
        for result in await self._scripts(calls, groups) if calls else []:
            if isinstance(result, Exception):
                raise result
        retention = self._config.counters_retention_days * DAY
        pipe = self._redis.pipeline(transaction=False)
        for source, target in todo:
            pipe.set(keys.alias(source), target, ex=retention)
        await pipe.execute()
        pipe = self._redis.pipeline(transaction=False)
        for source, _ in todo:
            src = keys.ConversationKeys.of(source)
            pipe.delete(src.state, src.messages)
            pipe.zrem(keys.deadlines(src.shard), source)
        await pipe.execute()

    async def due(self, now: int, limit: int = 500) -> list[str]:
        """Conversation keys whose next warning or close is due, across every shard."""
        return [key for _, key in await self._scored_up_to(keys.deadlines, now, limit)]

    async def _scored_up_to(
        self, key_of: Callable[[int], str], until: int, limit: int
    ) -> list[tuple[int, str]]:
        """``(shard, member)`` of every shard's sorted set ``key_of(shard)`` with a score up
        to ``until``, at most ``limit`` a shard; one pipeline."""
        pipe = self._redis.pipeline(transaction=False)
        for shard in range(keys.SHARDS):
            pipe.zrangebyscore(key_of(shard), "-inf", until, start=0, num=limit)
        return [
            (shard, _str(m)) for shard, members in enumerate(await pipe.execute()) for m in members
        ]

    async def close(self, conversation_keys: Sequence[str], now: int) -> list[Applied]:
        """Warn or close each conversation whose time has come; safe to race with others."""
        calls: list[_Call] = []
        for key in conversation_keys:
            k = keys.ConversationKeys.of(key)
            calls.append(
                (
                    "close",
                    [
                        k.state,
                        keys.deadlines(k.shard),
                        keys.outbox(k.shard),
                        keys.outbox_queue(k.shard),
                    ],
                    [key, now, self._offsets],
                )
            )
        results = await self._scripts(calls, list(conversation_keys))
        out = []
        for key, result in zip(conversation_keys, results, strict=True):
            if isinstance(result, Exception):
                raise result
            transitions = _transitions(orjson.loads(result))
            where = (
                (keys.shard_of(key), f"{key}|close:{transitions[-1].id}") if transitions else None
            )
            out.append(Applied(transitions, where))
        return out

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

    async def stale_outbox(self, older_than: int, limit: int = 500) -> list[Applied]:
        """Outbox entries written before ``older_than`` and never acknowledged: a process
        died between its script and its publish. Re-publishing them keeps their ids."""
        found = await self._scored_up_to(keys.outbox_queue, older_than, limit)
        if not found:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for shard, field in found:
            pipe.hget(keys.outbox(shard), field)
        out = []
        for where, raw in zip(found, await pipe.execute(), strict=True):
            out.append(Applied(_transitions(orjson.loads(raw) if raw else None), where))
        return out

    @property
    def redis(self) -> AnyRedis:
        """The client, for read-only views (finance's counts)."""
        return self._redis

    async def conversation(self, key: str) -> dict[str, str]:
        """The stored state of one conversation (empty when never seen)."""
        raw = await self._redis.hgetall(keys.ConversationKeys.of(key).state)
        return {_str(k): _str(v) for k, v in raw.items()}

    async def open_count(self) -> int:
        """Users with something still to warn about or close: members of every shard's
        deadline index (an open service window, entry point window or conversation)."""
        pipe = self._redis.pipeline(transaction=False)
        for shard in range(keys.SHARDS):
            pipe.zcard(keys.deadlines(shard))
        return sum(int(n) for n in await pipe.execute())

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

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False


@dataclass(frozen=True, slots=True)
class CounterRow:
    """One stored finance counter: a quarter hour of one UTC day, one number, one metric."""

    day: int  # days since 1970-01-01, UTC
    quarter: int  # 0-95 within the day
    waba_id: str
    phone_number_id: str
    metric: str
    dimensions: tuple[str, ...]
    count: int

    @property
    def start(self) -> int:
        """The quarter hour's start, Unix seconds."""
        return self.day * DAY + self.quarter * 900


async def read_counters(redis: AnyRedis, first_day: int, last_day: int) -> list[CounterRow]:
    """Every counter of the UTC days ``first_day`` to ``last_day`` (inclusive), all shards."""
    pipe = redis.pipeline(transaction=False)
    days = range(first_day, last_day + 1)
    for day in days:
        for shard in range(keys.SHARDS):
            pipe.hgetall(keys.counters(shard, str(day)))
    results = await pipe.execute()
    rows = []
    for i, fields in enumerate(results):
        day = days[i // keys.SHARDS]
        for raw_field, raw_count in fields.items():
            count = int(raw_count)
            if count == 0:
                continue
            quarter, waba, number, metric, *dims = _str(raw_field).split("|")
            rows.append(
                CounterRow(
                    day, int(quarter), waba, number, metric, tuple(d for d in dims if d), count
                )
            )
    return rows
