"""What a store remembers of its own writes (engine/reads.py): a batch skips the read of a
conversation it wrote, and is never wrong for it, whatever other processes wrote since."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tests.conftest import loaded_store
from wawindow import keys
from wawindow.contracts import TransitionType
from wawindow.dev import samples
from wawindow.engine.people import People
from wawindow.engine.reads import Reads, cost
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.suppression import SuppressionConfig, Suppressions
from wawindow.errors import StoreError
from wawindow.ingest.split import split_body
from wawindow.kafka.consent_records import erasure_record
from wawindow.redis.connection import AnyRedis
from wawindow.rules.state import State

USER = "16505551234"
KEY = f"{samples.PHONE_NUMBER_ID}:{USER}"
OPENED = TransitionType.SERVICE_WINDOW_OPENED


def inbound(wamid: str, at: int) -> tuple[str, dict[str, Any]]:
    body = samples.body(
        samples.messages_change(messages=[samples.text_message(wamid, at, wa_id=USER)])
    )
    (event,) = split_body(samples.encode(body), at * 1000).events
    return event.key, orjson.loads(event.encode())


# -- the memory on its own ---------------------------------------------------------------------


def test_the_least_recently_used_are_forgotten_first() -> None:
    reads = Reads(budget=2 * cost(b"{}"))
    reads.wrote(["a"], "a", "1", b"{}", None, State())
    reads.wrote(["b"], "b", "1", b"{}", None, State())
    assert reads.get("a") is not None  # a is now the most recent
    reads.wrote(["c"], "c", "1", b"{}", None, State())
    assert (reads.get("a") is not None, reads.get("b"), reads.get("c") is not None) == (
        True,
        None,
        True,
    )


def test_the_memory_is_bounded_in_bytes() -> None:
    """A large document takes the room of several small ones; forgetting gives it back."""
    small, large = b"{}", b"{" + b" " * 1000 + b"}"
    reads = Reads(budget=cost(large) + cost(small))
    for k in "abc":
        reads.wrote([k], k, "1", small, None, State())
    assert reads.used == 3 * cost(small)
    reads.wrote(["big"], "big", "1", large, None, State())
    assert [k for k in "abc" if reads.get(k) is not None] == ["c"]
    assert reads.used == cost(large) + cost(small)
    reads.forget(["big", "c"])
    assert reads.used == 0


def test_a_home_merged_away_forgets_every_key_kept_as_living_there() -> None:
    reads = Reads()
    reads.wrote(["wa", "bsuid"], "bsuid", "2", b"{}", None, State())
    reads.wrote(["other"], "other", "1", b"{}", None, State())
    reads.forget_homes(["bsuid"])
    assert (reads.get("wa"), reads.get("bsuid")) == (None, None)
    assert reads.get("other") is not None
    assert reads.used == cost(b"{}")


def test_window_events_stay_pending_until_their_own_field_is_acknowledged() -> None:
    reads = Reads()
    reads.wrote(["a", "a2"], "a", "3", b"{}", ("a|v3", []), State())
    reads.acknowledged(["a|v2"])  # an older write's field: not this one
    kept = reads.get("a")
    assert kept is not None
    assert [f for f, _ in kept.pending] == ["a|v3"]
    reads.acknowledged(["a|v3"])
    assert [reads.get(k).pending for k in ("a", "a2")] == [[], []]  # type: ignore[union-attr]
    reads.forget(["a"])
    assert reads.get("a") is None
    assert reads.get("a2") is not None


# -- against Redis -----------------------------------------------------------------------------


async def evalsha_calls(redis: AnyRedis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.redis
async def test_a_conversation_this_store_wrote_is_written_without_reading_it(
    redis: AnyRedis,
) -> None:
    store = await loaded_store(redis)
    now = int(time.time())
    await store.apply([inbound("wamid.1", now - 120)], now)

    before = await evalsha_calls(redis)
    await store.apply([inbound("wamid.2", now - 60)], now)

    assert await evalsha_calls(redis) - before == 1  # commit.lua only, no read.lua
    assert len((await store.conversation(KEY)).inbound) == 2


@pytest.mark.redis
async def test_what_another_process_wrote_meanwhile_is_never_overwritten(
    redis: AnyRedis,
) -> None:
    ours, theirs = await loaded_store(redis), WindowStore(redis, EngineConfig())
    now = int(time.time())
    await ours.apply([inbound("wamid.1", now - 300)], now)
    await theirs.apply([inbound("wamid.2", now - 200)], now)  # another worker, a sweeper …

    report = await ours.apply([inbound("wamid.3", now - 100)], now)

    assert [r.error for r in report.results] == [None]  # type: ignore[union-attr]
    fresh = WindowStore(redis, EngineConfig())
    assert sorted((await fresh.conversation(KEY)).inbound) == [now - 300, now - 200, now - 100]


@pytest.mark.redis
async def test_a_close_the_sweeper_wrote_meanwhile_is_kept_and_not_published_again(
    redis: AnyRedis,
) -> None:
    ours, sweeper = await loaded_store(redis), WindowStore(redis, EngineConfig())
    now = int(time.time())
    opened = now - 24 * 3600 + 60  # the window ends a minute from now
    first = await ours.apply([inbound("wamid.1", opened)], now)
    ours.carry([o for a in first.applied for o in a.outbox])  # Kafka has them
    await ours.flush_acknowledged()
    swept, failed = await sweeper.close([KEY], opened + 24 * 3600 + 5)  # the sweeper's write
    await sweeper.acknowledge([o for a in swept for o in a.outbox])

    report = await ours.apply([inbound("wamid.2", now + 120)], now + 120)  # a new window

    by_sweeper = [t.type for a in swept for t in a.transitions]
    by_us = [t.type for a in report.applied for t in a.transitions]
    state = await WindowStore(redis, EngineConfig()).conversation(KEY)
    assert (failed, by_sweeper) == ({}, ["service_window.closed"])
    assert by_us == ["service_window.opened"]  # the close is not published a second time
    assert (state.windows[opened].closed, state.windows[now + 120].closed) == (True, False)


@pytest.mark.redis
async def test_an_erasure_by_another_process_meanwhile_is_not_undone(redis: AnyRedis) -> None:
    ours, theirs = await loaded_store(redis), WindowStore(redis, EngineConfig())
    people = People(theirs, Suppressions(theirs, SuppressionConfig.of(b"erasure-test-key")))
    now = int(time.time())
    await people.note_numbers([(samples.PHONE_NUMBER_ID, samples.WABA_ID)], now)
    await ours.apply([inbound("wamid.1", now - 300)], now)
    erased = await people.apply([erasure_record(samples.WABA_ID, USER, now - 100, "test")], now)

    report = await ours.apply([inbound("wamid.2", now - 200)], now)  # older than the erasure
    state = await WindowStore(redis, EngineConfig()).conversation(KEY)

    assert [r.error for r in erased.results] == [None]  # type: ignore[union-attr]
    assert [r.error for r in report.results] == [None]  # type: ignore[union-attr]
    assert (state.erased, state.inbound, state.windows) == (now - 100, [], {})


@pytest.mark.redis
async def test_unacknowledged_window_events_go_out_again_as_after_a_read(
    redis: AnyRedis,
) -> None:
    store = await loaded_store(redis)
    now = int(time.time())
    first = await store.apply([inbound("wamid.1", now - 120)], now)
    assert [t.type for a in first.applied for t in a.transitions] == [OPENED]

    # the publish failed: nothing acknowledged, the batch is applied again
    again = await store.apply([inbound("wamid.1", now - 120)], now)
    assert [t.type for a in again.applied for t in a.transitions] == [OPENED]
    assert [a.outbox for a in again.applied] == [a.outbox for a in first.applied]


@pytest.mark.redis
async def test_acknowledged_window_events_do_not_go_out_again(redis: AnyRedis) -> None:
    store = await loaded_store(redis)
    now = int(time.time())
    first = await store.apply([inbound("wamid.1", now - 120)], now)
    await store.acknowledge([where for a in first.applied for where in a.outbox])

    again = await store.apply([inbound("wamid.1", now - 120)], now)

    assert [t for a in again.applied for t in a.transitions] == []


@pytest.mark.redis
async def test_a_user_linked_elsewhere_meanwhile_is_written_where_they_live_now(
    redis: AnyRedis,
) -> None:
    ours = await loaded_store(redis)
    now = int(time.time())
    await ours.apply([inbound("wamid.1", now - 300)], now)
    # another process links the user to a BSUID key (as link_many does when the old key
    # holds nothing to merge: it only points the old key at the new one)
    elsewhere = f"{samples.PHONE_NUMBER_ID}:US.13491208655302741918"
    await redis.set(keys.alias(KEY), elsewhere)

    await ours.apply([inbound("wamid.2", now - 200)], now)

    assert sorted((await ours.conversation(elsewhere)).inbound) == [now - 200]
    assert sorted((await ours.conversation(KEY)).inbound) == [now - 300]


@pytest.mark.redis
async def test_a_version_number_that_comes_back_after_a_loss_is_not_taken_for_ours(
    redis: AnyRedis,
) -> None:
    ours, theirs = await loaded_store(redis), WindowStore(redis, EngineConfig())
    now = int(time.time())
    await ours.apply([inbound("wamid.1", now - 300)], now)  # version 1, remembered
    state_key, _ = keys.document_keys(KEY)
    await redis.delete(state_key)  # lost (a restart that lost the last writes, an expiry)
    await theirs.apply([inbound("wamid.2", now - 200)], now)  # version 1 again, other facts

    await ours.apply([inbound("wamid.3", now - 100)], now)

    assert sorted((await ours.conversation(KEY)).inbound) == [now - 200, now - 100]


@pytest.mark.redis
async def test_a_batch_redis_refused_is_run_again_from_what_redis_holds(
    redis: AnyRedis,
) -> None:
    """The rules change a remembered state in place; when Redis refuses the write (full,
    here), the batch is retried, and the retry runs on what was written, not on what the
    refused run left: its window event is made again, not taken for a repeat."""
    store = await loaded_store(redis)
    now = int(time.time())
    first = await store.apply([inbound("wamid.1", now - 7200)], now)
    await store.acknowledge([o for a in first.applied for o in a.outbox])
    await redis.config_set("maxmemory", "1")
    try:
        with pytest.raises(StoreError) as refused:
            await store.apply([inbound("wamid.2", now - 60)], now)
        assert refused.value.retriable  # Redis was full: the batch is tried again
    finally:
        await redis.config_set("maxmemory", "0")

    again = await store.apply([inbound("wamid.2", now - 60)], now)

    assert [r.notes for r in again.results] == [()]  # type: ignore[union-attr]
    extended = TransitionType.SERVICE_WINDOW_EXTENDED
    assert [t.type for a in again.applied for t in a.transitions] == [extended]


@pytest.mark.redis
async def test_a_conversation_redis_cannot_write_fails_alone_in_its_batch(
    redis: AnyRedis,
) -> None:
    """One commit.lua call writes the batch; a conversation whose keys Redis cannot write
    (its deadline index part is a string, not a sorted set) fails alone."""
    store = await loaded_store(redis)
    now = int(time.time())
    other = f"{samples.PHONE_NUMBER_ID}:16505550009"
    await redis.set(keys.ConversationKeys.of(KEY).deadline_part, "not a sorted set")
    body = samples.body(
        samples.messages_change(
            messages=[samples.text_message("wamid.9", now - 60, wa_id="16505550009")]
        )
    )
    (event,) = split_body(samples.encode(body), now * 1000).events

    report = await store.apply(
        [inbound("wamid.1", now - 60), (other, orjson.loads(event.encode()))], now
    )

    broken, fine = report.results
    assert isinstance(broken, StoreError)
    assert "WRONGTYPE" in str(broken)
    assert not broken.retriable  # this conversation's keys: dead-lettered, not retried
    assert not isinstance(fine, Exception)
    assert fine.error is None
    assert (await store.conversation(other)).inbound == [now - 60]
