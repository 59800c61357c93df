"""The deadline index in parts (keys.DEADLINE_PARTS per shard) and the shard's summary of
them: the sweeper finds every due conversation and nothing else, the summary stays exact
through writes, closes and postponements, and a part stays in Redis's compact encoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import loaded_store
from wawindow import keys
from wawindow.dev import samples
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.ingest.split import split_body
from wawindow.redis.connection import AnyRedis
from wawindow.rules.service_window import CSW_SECONDS

pytestmark = [pytest.mark.redis]
NOW = 1_790_000_000


def inbound(user: str, at: int) -> tuple[str, dict[str, Any]]:
    body = samples.body(
        samples.messages_change(messages=[samples.text_message(f"wamid.{user}", at, wa_id=user)])
    )
    (event,) = split_body(samples.encode(body), at * 1000).events
    return event.key, orjson.loads(event.encode())


async def parts(redis: AnyRedis) -> dict[tuple[int, int], list[tuple[bytes, float]]]:
    """Every non-empty part of every shard's deadline index, its members with their scores."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.SHARDS):
        for part in range(keys.DEADLINE_PARTS):
            pipe.zrange(keys.deadline_part(shard, part), 0, -1, withscores=True)
    found = iter(await pipe.execute())
    every = [(s, p) for s in range(keys.SHARDS) for p in range(keys.DEADLINE_PARTS)]
    return {where: members for where, members in zip(every, found, strict=True) if members}


async def summaries_match_parts(redis: AnyRedis) -> None:
    """Every shard's summary names exactly its non-empty parts, each at its earliest score."""
    pipe = redis.pipeline(transaction=False)
    for shard in range(keys.SHARDS):
        pipe.zrange(keys.deadline_summary(shard), 0, -1, withscores=True)
    summaries = {
        (shard, int(p)): int(score)
        for shard, found in enumerate(await pipe.execute())
        for p, score in found
    }
    earliest = {
        where: int(min(s for _, s in members)) for where, members in (await parts(redis)).items()
    }
    assert summaries == earliest


async def deadline_of(redis: AnyRedis, key: str) -> int:
    """A conversation's deadline in the index (it must have one)."""
    score = await redis.zscore(keys.ConversationKeys.of(key).deadline_part, key)
    assert score is not None, f"{key} is not in the deadline index"
    return int(score)


async def indexed(redis: AnyRedis) -> dict[str, int]:
    """Every member of every part of every shard's deadline index, with its deadline."""
    return {m.decode(): int(s) for members in (await parts(redis)).values() for m, s in members}


async def test_the_sweeper_finds_every_due_conversation_and_no_other(redis: AnyRedis) -> None:
    store = await loaded_store(redis)
    users = [f"1650{u:07d}" for u in range(600)]
    events = [inbound(u, NOW - 36_000 + 60 * i) for i, u in enumerate(users)]  # a minute apart
    await store.apply(events, NOW)
    await summaries_match_parts(redis)
    assert await store.deadlines.open_count() == len(users)
    deadlines = await indexed(redis)
    assert set(deadlines) == {key for key, _ in events}

    for at in sorted(deadlines.values())[::97]:
        due = await store.deadlines.due(at, limit=1000)
        assert sorted(due) == sorted(k for k, d in deadlines.items() if d <= at)

    at = sorted(deadlines.values())[300]
    closed, failed = await store.close(await store.deadlines.due(at, limit=1000), at)
    assert (bool(closed), failed) == (True, {})
    await summaries_match_parts(redis)
    after = await indexed(redis)
    assert sorted(await store.deadlines.due(at, limit=1000)) == sorted(
        k for k, d in after.items() if d <= at
    )
    assert all(d > at for d in after.values())  # what was due moved on: the close is next


async def test_a_postponed_conversation_moves_its_parts_summary(redis: AnyRedis) -> None:
    store = await loaded_store(redis)
    key, event = inbound("16505550001", NOW - 600)
    await store.apply([(key, event)], NOW)
    k = keys.ConversationKeys.of(key)
    part = keys.deadline_part_of(key)
    before = await redis.zscore(keys.deadline_summary(k.shard), str(part))
    assert before is not None

    await store.deadlines.postpone([key], int(before) + 3600, due_at=int(before))
    assert await redis.zscore(k.deadline_part, key) == before + 3600
    await summaries_match_parts(redis)
    assert await store.deadlines.due(int(before) + 60) == []
    assert await store.deadlines.due(int(before) + 3600) == [key]


async def test_a_summary_that_names_a_deleted_part_is_mended(redis: AnyRedis) -> None:
    store = await loaded_store(redis)
    key, event = inbound("16505550002", NOW - 600)
    await store.apply([(key, event)], NOW)
    k = keys.ConversationKeys.of(key)
    await redis.delete(k.deadline_part)  # by hand: the summary still names the part

    assert await store.deadlines.due(NOW + 2 * CSW_SECONDS) == []
    assert await redis.zcard(keys.deadline_summary(k.shard)) == 0
    await summaries_match_parts(redis)


async def test_a_part_keeps_the_compact_encoding_at_a_million_open_windows(
    redis: AnyRedis,
) -> None:
    """About a million / (SHARDS x DEADLINE_PARTS) = 61 members a part: one part's members,
    written by the store, take the listpack encoding that makes a member cost its bytes."""
    store = await loaded_store(redis)
    per_part = 1_000_000 // (keys.SHARDS * keys.DEADLINE_PARTS)
    target = None
    chosen: list[tuple[str, dict[str, Any]]] = []
    u = 0
    while len(chosen) < per_part:  # users whose keys fall in the same part of one shard
        user = f"1651{u:07d}"
        key = keys.conversation_key(samples.PHONE_NUMBER_ID, user)
        u += 1
        where = (keys.shard_of(key), keys.deadline_part_of(key))
        target = target or where
        if where == target:
            chosen.append(inbound(user, NOW - 600))
    await store.apply(chosen, NOW)
    assert target is not None
    part = keys.deadline_part(*target)
    assert await redis.zcard(part) == per_part
    assert await redis.object("encoding", part) == b"listpack"


async def test_the_open_count_is_refreshed_a_few_shards_at_a_time(redis: AnyRedis) -> None:
    store = await loaded_store(redis)
    await store.apply([inbound(f"1652{u:07d}", NOW - 600) for u in range(50)], NOW)
    assert await store.deadlines.open_count(16) == 50  # the first count asks every shard

    await store.apply([inbound(f"1653{u:07d}", NOW - 600) for u in range(50)], NOW)
    counts = [await store.deadlines.open_count(16) for _ in range(keys.SHARDS // 16)]
    assert counts[0] < 100  # the new windows' shards are counted in turn
    assert counts == sorted(counts)
    assert counts[-1] == 100 == await store.deadlines.open_count()


def users_in_one_shard(count: int, prefix: str) -> list[str]:
    """Users whose conversation keys all fall in one shard (across its parts)."""
    chosen: list[str] = []
    shard = None
    u = 0
    while len(chosen) < count:
        user = f"{prefix}{u:07d}"
        u += 1
        where = keys.shard_of(keys.conversation_key(samples.PHONE_NUMBER_ID, user))
        shard = where if shard is None else shard
        if where == shard:
            chosen.append(user)
    return chosen


async def test_the_sweeper_takes_at_most_its_limit_from_a_shard(redis: AnyRedis) -> None:
    store = await loaded_store(redis)
    users = users_in_one_shard(12, "1654")
    await store.apply([inbound(u, NOW - 600) for u in users], NOW)
    later = NOW + 2 * CSW_SECONDS

    assert len(await store.deadlines.due(later, limit=5)) == 5
    assert len(await store.deadlines.due(later, limit=500)) == 12


async def test_a_set_aside_state_gets_a_ttl_and_a_swept_one_is_not_put_back(
    redis: AnyRedis,
) -> None:
    store = await loaded_store(redis)
    key, event = inbound("16505550003", NOW - 600)
    await store.apply([(key, event)], NOW)
    k = keys.ConversationKeys.of(key)
    assert await redis.ttl(k.state) == -1  # a state with a deadline has no TTL of its own

    due = await deadline_of(redis, key)
    await store.deadlines.postpone([key], NOW + 60, due_at=due)
    assert 0 < await redis.ttl(k.state) <= EngineConfig().rules.grace_s
    assert await redis.zscore(k.deadline_part, key) == NOW + 60

    await redis.zrem(k.deadline_part, key)  # swept meanwhile
    await store.deadlines.postpone([key], NOW + 120, due_at=NOW + 60)
    assert await redis.zscore(k.deadline_part, key) is None


async def test_a_deadline_written_after_the_sweep_found_it_due_is_not_postponed(
    redis: AnyRedis,
) -> None:
    """The sweep fails on a conversation that was due at ``due``; before it sets it aside, a
    new message moves its deadline on. The new deadline stays, and the state keeps no TTL."""
    store = await loaded_store(redis)
    key, event = inbound("16505550004", NOW - 600)
    await store.apply([(key, event)], NOW)
    k = keys.ConversationKeys.of(key)
    due = await deadline_of(redis, key)

    later, newer = inbound("16505550004", NOW)
    newer["event_id"] += ".2"  # another message of the same user
    await store.apply([(later, newer)], NOW)
    moved = await deadline_of(redis, key)
    assert moved == due + 600

    await store.deadlines.postpone([key], due + 60, due_at=due)
    assert await redis.zscore(k.deadline_part, key) == moved
    assert await redis.ttl(k.state) == -1
    await summaries_match_parts(redis)

    await store.deadlines.postpone([key], moved + 60, due_at=moved)  # due now: set aside
    assert await redis.zscore(k.deadline_part, key) == moved + 60
    await summaries_match_parts(redis)


class WrittenMeanwhile(WindowStore):
    """A store that, once it has merged a link's source into the target, lets another
    process write the source before it forgets it: the race a link can lose."""

    def __init__(self, redis: AnyRedis, other: WindowStore, late: tuple[str, Any]) -> None:
        super().__init__(redis, EngineConfig())
        self.other, self.late, self.target = other, late, ""

    async def run(self, asked: Any, rules: Any, now: int, **options: Any) -> Any:
        out = await super().run(asked, rules, now, **options)
        if list(asked) == [self.target]:
            self.target = ""  # once
            await self.other.apply([self.late], now)
        return out


async def test_a_link_whose_source_is_written_meanwhile_leaves_nothing_behind(
    redis: AnyRedis,
) -> None:
    """Linking merges the source into the target, then forgets the source as the version it
    merged; another process's write in between makes that forget refuse. Before, the source
    stayed (with its deadline and no TTL) behind the alias; now its newer version is merged
    too and then forgotten."""
    first = inbound("16505550004", NOW - 900)
    late_key, late = inbound("16505550004", NOW - 300)
    late["event_id"] = late["data"]["wamid"] = "wamid.later"
    store = WrittenMeanwhile(redis, await loaded_store(redis), (late_key, late))
    await store.load()
    await store.apply([first], NOW)
    target = f"{samples.PHONE_NUMBER_ID}:US.4"
    store.target = target

    await store.link_many([(first[0], target)], NOW)

    assert await store.raw_state(first[0]) is None  # the source is gone
    merged = await store.conversation(target)
    assert merged.inbound == [NOW - 900, NOW - 300]  # both of its writes are in the target
    parts = await indexed(redis)
    assert first[0] not in parts
    assert target in parts
