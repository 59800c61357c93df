"""Conversation state in Redis: the engine's operations. Events are applied, due windows
warned about and closed, a user's keys linked, published window events acknowledged; each
through the one read-decide-write path of :mod:`wawindow.engine.documents`, with the rules
(:mod:`wawindow.rules`) run between a read and an atomic write.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from wawindow import keys
from wawindow.config import Settings
from wawindow.engine.deadlines import DeadlineIndex, scored_up_to
from wawindow.engine.documents import (
    MAX_CONFLICTS,
    Applied,
    DocumentStore,
    Read,
    transitions_of,
)
from wawindow.engine.links import Links
from wawindow.engine.reads import READS_BYTES
from wawindow.engine.scripts import Scripts
from wawindow.errors import EventRejected, StoreConflict
from wawindow.redis.connection import AnyRedis, text, translated
from wawindow.rules import engine, fast
from wawindow.rules.engine import EventResult, Outcome, Rules
from wawindow.rules.state import State

_DEFAULT_RULES = Rules.from_settings(Settings())  # as the settings are by default


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's settings: the rules' tunables, and the store's own."""

    rules: Rules = _DEFAULT_RULES
    # how durable a batch's writes must be before the worker commits its offsets:
    # "auto", "none", "aof" (WAITAOF: fsynced to the primary's AOF; Redis 7.2+ or Valkey)
    # or "replicas:<n>" (WAIT: on n replicas)
    durability: str = "auto"
    durability_timeout_ms: int = 2_000
    # what the store keeps of the conversations it wrote, decoded (engine/reads.py)
    cache_bytes: int = READS_BYTES
    # events applied through rules/fast.py, held equal to the model (rules/engine.py)
    fast_path: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        return cls(
            Rules.from_settings(settings),
            settings.redis_durability,
            settings.redis_durability_timeout_ms,
            settings.worker_cache_mb * 2**20,
            settings.rules_fast_path,
        )


@dataclass(frozen=True, slots=True)
class Report:
    """What ``apply`` did: per event its result (or the error that kept it from being
    applied), and the writes whose window events are to be published."""

    results: list[EventResult | Exception]
    applied: list[Applied]


class WindowStore(DocumentStore):
    """Conversation state in Redis: read, run the rules, write back atomically."""

    def __init__(self, redis: AnyRedis, config: EngineConfig) -> None:
        scripts = Scripts(redis, config.durability, config.durability_timeout_ms)
        super().__init__(redis, scripts, config.rules.counts_retention_s, config.cache_bytes)
        self._rules = config.rules
        self._fast = config.fast_path
        # what the sweeper asks; a state it cannot sweep is kept as long as a state's grace
        self.deadlines = DeadlineIndex(redis, self._scripts, config.rules.grace_s)
        self.links = Links(redis, config.rules.counts_retention_s)

    @property
    def rules(self) -> Rules:
        return self._rules

    @property
    def retention_s(self) -> int:
        """How long counters (and what outlives a conversation) are kept."""
        return self._rules.counts_retention_s

    async def load(self) -> None:
        """Load the scripts; the first time, decide how durable writes are made."""
        await self._scripts.load()

    # -- the engine's operations --------------------------------------------------------------

    @translated
    async def apply(self, events: Sequence[tuple[str, dict[str, Any]]], now: int) -> Report:
        """Apply events ``(conversation key, event)``: per conversation, its events in order,
        one atomic write. A failing conversation fails only its own events."""
        groups: dict[str, list[int]] = {}
        for i, (key, _) in enumerate(events):
            groups.setdefault(key, []).append(i)

        rules_apply = fast.apply if self._fast else engine.apply

        def run(r: Read, asked: list[str]) -> Outcome:
            indexes = sorted(i for key in asked for i in groups[key])
            return rules_apply(r.state, r.key, [events[i][1] for i in indexes], now, self._rules)

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

    @translated
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

    @translated
    async def resolve(self, conversation_keys: Sequence[str]) -> dict[str, str]:
        """Where each key's user lives now: the key itself, or where it was linked to."""
        return await self.links.resolve(conversation_keys)

    @translated
    async def link_many(self, pairs: Sequence[tuple[str, str]], now: int) -> list[Applied]:
        """Make each ``(source, target)`` one user (:meth:`Links.link`): the source's user
        merges into the target's, and the source points at the target from then on."""
        published, aliased = await self.links.link(pairs, now, self._merge)
        self._reads.forget(aliased)
        self._reads.forget_homes(aliased)  # a home merged away: every key kept as living there
        return published

    async def _merge(self, src: str, dst: str, now: int) -> tuple[list[Applied], bool]:
        """Merge the source into the target, then forget the source as the version that was
        merged; when another process wrote the source in between, merge its newer version
        too (the target merges each version once), so nothing of it is left behind. Returns
        what to publish, and whether the source held anything."""
        published: list[Applied] = []
        for _ in range(MAX_CONFLICTS):
            source = (await self._read([src]))[src]
            if isinstance(source, Exception):
                raise source
            if source.state.empty and not source.pending:
                return published, bool(published)

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
            # forget the source, if it is still the version merged
            gone, _ = self._commit(Read(src, source.version, State(), []), Outcome(State()))
            forget = dataclasses.replace(gone, document=b"")
            (forgotten,) = await self._scripts.commit([forget], now, self.retention_s)
            self._reads.forget([src])
            if isinstance(forgotten, Exception):
                raise forgotten
            if forgotten == 1:
                return published, True
        raise StoreConflict(f"{src} kept changing while it was linked to {dst}")

    @translated
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

    @translated
    async def stale_outbox(self, older_than: int, limit: int = 500) -> list[Applied]:
        """Outbox entries written before ``older_than`` and never acknowledged: a process
        died between its script and its publish. Re-publishing them keeps their ids."""
        await self.flush_acknowledged()  # what this process published is not among them
        found = await scored_up_to(self._redis, keys.outbox_queue, older_than, limit)
        if not found:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for shard, field in found:
            pipe.hget(keys.outbox(shard), field)
        return [
            Applied(transitions_of(raw), [where])
            for where, raw in zip(found, await pipe.execute(), strict=True)
        ]

    @property
    def redis(self) -> AnyRedis:
        """The client, for read-only views (finance's counts)."""
        return self._redis

    @translated
    async def raw_state(self, key: str) -> bytes | None:
        """The stored bytes of a conversation's state, as they are (for dead-letter)."""
        raw = await self._redis.get(keys.ConversationKeys.of(key).state)
        return raw if isinstance(raw, bytes) else None

    @translated
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

    @translated
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
