"""The deadline index: when each conversation's next warning or close is due, in
:data:`~wawindow.keys.DEADLINE_PARTS` parts per shard and a summary per shard of each part's
earliest deadline (docs/engine.md, "The deadline index"). ``commit.lua`` writes a
conversation's deadline with its state; here the sweeper asks what is due, sets a
conversation aside, and counts what is open."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from wawindow import keys
from wawindow.engine.connection import AnyRedis, text
from wawindow.engine.scripts import Call, Scripts


class DeadlineIndex:
    """The sweeper's view of the deadline index."""

    def __init__(self, redis: AnyRedis, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts
        self._open: dict[int, int] = {}  # shard -> members of its parts, when last counted
        self._next_shard = 0

    async def due(self, now: int, limit: int = 500) -> list[str]:
        """Conversation keys whose next warning or close is due, across every shard (at most
        ``limit`` a part of a shard's deadline index): the shards' summaries name the parts
        that are due, then those parts name the keys. A part the summary takes for due but
        that has nothing due (it was deleted) gets its summary entry mended."""
        parts = [
            (shard, int(p))
            for shard, p in await scored_up_to(
                self._redis, keys.deadlines, now, keys.DEADLINE_PARTS
            )
        ]
        if not parts:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for shard, part in parts:
            pipe.zrangebyscore(keys.deadline_part(shard, part), "-inf", now, start=0, num=limit)
        found = await pipe.execute()
        stale = [
            (shard, part)
            for (shard, part), members in zip(parts, found, strict=True)
            if not members
        ]
        if stale:
            await self._scripts.run(
                [self._deadline(shard, part, "", 0) for shard, part in stale],
                [keys.deadlines(shard) for shard, _ in stale],
            )
        return [text(m) for members in found for m in members]

    @staticmethod
    def _deadline(shard: int, part: int, key: str, at: int) -> Call:
        return ("deadline", [keys.deadline_part(shard, part), keys.deadlines(shard)], [key, at])

    async def postpone(self, conversation_keys: Sequence[str], until: int) -> None:
        """Move conversations' next deadline to ``until`` (a sweep that failed on them)."""
        calls = [
            self._deadline(keys.shard_of(k), keys.deadline_part_of(k), k, until)
            for k in conversation_keys
        ]
        for result in await self._scripts.run(calls, list(conversation_keys)):
            if isinstance(result, Exception):
                raise result

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
            pipe.zrange(keys.deadlines(shard), 0, -1)
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
