"""Links established once per process (engine/links.py): what a worker caches of its users'
links never splits a user, whatever another process or an erasure does meanwhile."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import SUPPRESSION_KEY
from tests.engine_harness import Scenario
from wawindow import keys
from wawindow.dev import samples
from wawindow.engine.people import People
from wawindow.engine.store import EngineConfig, WindowStore
from wawindow.engine.suppression import SuppressionConfig, Suppressions
from wawindow.kafka.consent_records import erasure_record
from wawindow.kafka.publisher import Publisher, Record
from wawindow.redis.connection import text

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PN = samples.PHONE_NUMBER_ID
WA = "16505551234"
BSUID = "US.13491208655302741918"
NEW_BSUID = "US.99991208655302741918"
WA_KEY, BSUID_KEY, NEW_KEY = f"{PN}:{WA}", f"{PN}:{BSUID}", f"{PN}:{NEW_BSUID}"


async def message(
    s: Scenario, wamid: str, at: int, *, wa: str | None = WA, bsuid: str | None = BSUID
) -> None:
    msg = samples.text_message(wamid, at, wa_id=wa, user_id=bsuid)
    contacts = [samples.contact(wa, bsuid)]
    await s.post(samples.messages_change(contacts=contacts, messages=[msg]))


async def alias_of(s: Scenario, key: str) -> str | None:
    raw = await s.redis.get(keys.alias(key))
    return None if raw is None else text(raw)


async def test_a_pair_seen_with_every_event_writes_its_alias_once(s: Scenario) -> None:
    """Sixty events name the same two ids, in three batches: the alias is written by the
    first (its time to live is set then) and never again (it only runs down)."""
    left: list[int] = []
    for batch in range(3):
        for i in range(20):
            await message(s, f"wamid.{batch}.{i}", s.now - 3000 + batch * 100 + i)
        await s.process()
        left.append(await s.redis.pttl(keys.alias(WA_KEY)))

    assert left[0] > left[1] > left[2] > 0
    assert await alias_of(s, WA_KEY) == BSUID_KEY
    assert (await s.counts())["inbound_messages"] == 60


async def test_a_link_learned_again_after_an_erasure_reaches_the_user(
    s: Scenario, publisher: Publisher
) -> None:
    """The erasure deletes the links this worker has cached; when the person writes again
    with both ids, the link is made anew, so a later wa_id-only event joins them."""
    await message(s, "wamid.1", s.now - 900)
    await s.process()
    erasure = erasure_record(samples.WABA_ID, BSUID, s.now - 700, "test")
    await publisher.publish(
        [Record(s.topics.consent_events, orjson.dumps(erasure), erasure["event_id"].encode())]
    )
    await s.process()
    assert await alias_of(s, WA_KEY) is None

    await message(s, "wamid.2", s.now - 300)
    await message(s, "wamid.3", s.now - 60, bsuid=None)  # wa_id only
    await s.process()

    assert await alias_of(s, WA_KEY) == BSUID_KEY
    assert (await s.state(BSUID_KEY))["csw_opened"] == str(s.now - 300)
    assert int((await s.state(BSUID_KEY))["csw_expires"]) == s.now - 60 + 24 * 3600
    assert await s.state(WA_KEY) == {}


async def test_an_erasure_by_another_process_drops_what_this_one_cached(s: Scenario) -> None:
    await message(s, "wamid.1", s.now - 900)
    await s.process()
    other = WindowStore(s.redis, EngineConfig())
    people = People(other, Suppressions(other, SuppressionConfig.of(SUPPRESSION_KEY.encode())))
    report = await people.apply([erasure_record(samples.WABA_ID, WA, s.now - 700, "t")], s.now)
    assert report.results[0].error is None  # type: ignore[union-attr]
    assert await alias_of(s, WA_KEY) is None

    await message(s, "wamid.2", s.now - 300)
    await message(s, "wamid.3", s.now - 60, bsuid=None)
    await s.process()

    assert await alias_of(s, WA_KEY) == BSUID_KEY
    assert await s.state(WA_KEY) == {}
    assert int((await s.state(BSUID_KEY))["csw_expires"]) == s.now - 60 + 24 * 3600


async def test_a_link_changed_by_another_worker_while_cached_ends_on_one_user(
    s: Scenario,
) -> None:
    """This worker linked the wa_id to the BSUID; another moves the BSUID's user to a new
    BSUID. The wa_id's next pair is resolved again and its alias leads straight there."""
    await message(s, "wamid.1", s.now - 900)
    await s.process()
    other = WindowStore(s.redis, EngineConfig())
    await other.link_many([(BSUID_KEY, NEW_KEY)], s.now)
    assert await s.state(BSUID_KEY) == {}

    await message(s, "wamid.2", s.now - 300)
    await message(s, "wamid.3", s.now - 60, bsuid=None)
    await s.process()

    assert await alias_of(s, WA_KEY) == NEW_KEY  # one hop, as if nothing had been cached
    merged = await s.state(NEW_KEY)
    assert (merged["csw_opened"], merged["wa_id"]) == (str(s.now - 900), WA)
    assert int(merged["csw_expires"]) == s.now - 60 + 24 * 3600
    assert await s.state(WA_KEY) == await s.state(BSUID_KEY) == {}


async def test_a_chain_of_links_in_one_batch_of_the_worker(s: Scenario) -> None:
    """A number change and the new number's BSUID arrive in one batch, after the old number
    was cached as linked: the old number's window ends on the BSUID's state."""
    old = "12195555358"
    await message(s, "wamid.1", s.now - 900, wa=old, bsuid=None)
    await message(s, "wamid.2", s.now - 800, wa=old, bsuid="US.1")
    await s.process()
    system = samples.number_change("wamid.sys", s.now - 300, old, WA)
    await s.post(samples.messages_change(messages=[system]))
    await message(s, "wamid.3", s.now - 200)
    await s.process()

    assert (await s.state(BSUID_KEY))["csw_opened"] == str(s.now - 900)
    for key in (f"{PN}:{old}", f"{PN}:US.1", WA_KEY):
        assert await s.state(key) == {}
    assert set((await s.store.resolve([f"{PN}:{old}", WA_KEY])).values()) == {BSUID_KEY}
