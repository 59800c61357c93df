"""The deadline index: when each conversation's next warning or close is due, in
:data:`~wawindow.keys.DEADLINE_PARTS` parts per shard and a summary per shard of each part's
earliest deadline (docs/engine.md, "The deadline index"). ``commit.lua`` writes a
conversation's deadline with its state; here the sweeper asks what is due, sets a
conversation aside, and counts what is open."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from wawindow import keys
from wawindow.engine.scripts import Deadline, Scripts
from wawindow.redis.connection import AnyRedis, text, translated


class DeadlineIndex:
    """The sweeper's view of the deadline index."""

    def __init__(self, redis: AnyRedis, scripts: Scripts, set_aside_keep_s: int) -> None:
        self._redis = redis
        self._scripts = scripts
        self._set_aside_keep_s = set_aside_keep_s  # a set-aside state's TTL, if it has none
        self._open: dict[int, int] = {}  # shard -> members of its parts, when last counted
        self._next_shard = 0

    @translated
    async def due(self, now: int, limit: int = 500) -> list[str]:
        """Conversation keys whose next warning or close is due, at most ``limit`` a shard:
        the shards' summaries name the parts that are due (the earliest first), then those
        parts name the keys. A part the summary takes for due but that has nothing due (its
        members moved on, or it was deleted) gets its summary entry mended."""
        summaries = await scored_up_to(self._redis, keys.deadline_summary, now, keys.DEADLINE_PARTS)
        parts = [(shard, int(p)) for shard, p in summaries]
        if not parts:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for shard, part in parts:
            pipe.zrangebyscore(keys.deadline_part(shard, part), "-inf", now, start=0, num=limit)
        found = await pipe.execute()
        out: list[str] = []
        taken: dict[int, int] = {}  # shard -> keys taken from its parts so far
        stale: list[tuple[int, int]] = []
        for (shard, part), members in zip(parts, found, strict=True):
            if not members:
                stale.append((shard, part))
            kept = members[: limit - taken.get(shard, 0)]
            taken[shard] = taken.get(shard, 0) + len(kept)
            out += [text(m) for m in kept]
        if stale:
            await self._scripts.deadlines([Deadline(shard, part) for shard, part in stale])
        return out

    @translated
    async def postpone(self, conversation_keys: Sequence[str], until: int, due_at: int) -> None:
        """Set aside conversations a sweep at ``due_at`` failed on: their next deadline moves
        to ``until`` and a state without a TTL gets one, so one that never becomes sweepable
        is gone in the end (``set_aside_keep_s`` after the first). Only while they are in the
        index with a deadline due at ``due_at``: one written since with a later deadline (a
        new event) keeps it."""
        keep = self._set_aside_keep_s
        changes = [Deadline.set_aside(k, until, keep, due_at) for k in conversation_keys]
        for result in await self._scripts.deadlines(changes):
            if isinstance(result, Exception):
                raise result

    @translated
    async def open_count(self, shards: int = keys.SHARDS) -> int:
        """Users with something still to warn about or close: members of every shard's
        deadline index (an open service window, entry point window or conversation).
        ``shards``: count that many shards anew, the next ones in turn, and the others as
        last counted (a gauge refreshed every few seconds need not ask every part each time);
        every shard is counted the first time."""
        if not self._open:
            shards = keys.SHARDS
        asked = [(self._next_shard + i) % keys.SHARDS for i in range(min(shards, keys.SHARDS))]
        self._next_shard = (self._next_shard + len(asked)) % keys.SHARDS
        pipe = self._redis.pipeline(transaction=False)
        for shard in asked:
            pipe.zrange(keys.deadline_summary(shard), 0, -1)
        parts = await pipe.execute()
        pipe = self._redis.pipeline(transaction=False)
        for shard, in_use in zip(asked, parts, strict=True):
            for part in in_use:
                pipe.zcard(keys.deadline_part(shard, int(part)))
        counts = iter(await pipe.execute() if len(pipe) else [])
        for shard, in_use in zip(asked, parts, strict=True):
            self._open[shard] = sum(int(next(counts)) for _ in in_use)
        return sum(self._open.values())


async def scored_up_to(
    redis: AnyRedis, key_of: Callable[[int], str], until: int, limit: int
) -> list[tuple[int, str]]:
    """``(shard, member)`` of every shard's sorted set ``key_of(shard)`` with a score up
    to ``until``, at most ``limit`` a shard; one pipeline."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.SHARDS):
        pipe.zrangebyscore(key_of(shard), "-inf", until, start=0, num=limit)
    return [(shard, text(m)) for shard, members in enumerate(await pipe.execute()) for m in members]
