"""An opt-out outlives erasure, against the real Kafka and Redis: after
``DELETE /v1/users/{waba}/{user}``, send-check refuses what it refused before, under every
consent policy, after a replay and after a rebuild from Kafka in which the records the
suppression came from were tombstoned; a newer opt-in lifts it; what stays holds keyed
hashes, never plain ids."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tests.cliutil import base_env, run
from tests.conftest import SUPPRESSION_KEY, Services, new_prefix
from tests.engine_harness import HOUR, Scenario
from tests.kafkautil import read_all
from tests.test_consent import (
    BSUID,
    PN,
    WA,
    WABA,
    WRITER,
    ApiClient,
    api_settings,
    auth,
    client_for,
    record,
)
from wawindow import keys
from wawindow.dev import samples
from wawindow.engine.marks import ErasureMarks
from wawindow.engine.suppression import SuppressionConfig, Suppressions
from wawindow.engine.worker import Worker
from wawindow.kafka.publisher import Publisher, Record
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics
from wawindow.redis.connection import text
from wawindow.rules.suppression import digest

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PREFS = "16505550190"  # stopped marketing through user_preferences
FAILED = "16505550191"  # a 131050 failure: stopped marketing
RECORDED = "16505550192"  # an opt-out the business recorded
KINDS = ("template:marketing", "template:utility")


async def check(api: ApiClient, kind: str, user: str) -> dict[str, Any]:
    response = await api.get(
        "/v1/send-check",
        params={"phone_number_id": PN, "user": user, "kind": kind, "waba_id": WABA},
        headers=auth(WRITER),
    )
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def answers(api: ApiClient, users: tuple[str, ...]) -> dict[tuple[str, str], Any]:
    """Per (user, kind): (allowed, reason, suppressed)."""
    out = {}
    for user in users:
        for kind in KINDS:
            a = await check(api, kind, user)
            out[user, kind] = (a["allowed"], a["reason"], a.get("suppressed", False))
    return out


async def opt_outs(s: Scenario, api: ApiClient) -> None:
    """Four people, each with an opt-out of another kind, long before now."""
    t = s.now - 5 * HOUR
    stop = samples.text_message("wamid.stop", t, "STOP", wa_id=WA, user_id=BSUID)
    await s.post(samples.messages_change(messages=[stop]))
    await s.post(samples.preference(PREFS, "stop", t))
    failed = samples.status("wamid.mkt", "failed", t, wa_id=FAILED, error_code=131050)
    await s.post(samples.messages_change(statuses=[failed]))
    status, _ = await record(api, user=RECORDED, category="utility", decision="opt_out", at=t)
    assert status == 202


async def erase(s: Scenario, api: ApiClient, *users: str) -> None:
    for user in users:
        response = await api.delete(f"/v1/users/{WABA}/{user}", headers=auth(WRITER))
        assert response.status == 202, await response.text()
    await s.process()


PEOPLE = (WA, PREFS, FAILED, RECORDED)


@pytest.mark.parametrize("policy", ["off", "record", "enforce"])
async def test_erasing_a_person_who_opted_out_refuses_what_was_refused_before(
    s: Scenario, publisher: Publisher, policy: str
) -> None:
    api = await client_for(api_settings(s, policy), s, publisher)
    try:
        await opt_outs(s, api)
        await s.process()
        before = await answers(api, (*PEOPLE, BSUID))
        await erase(s, api, *PEOPLE)
        window = await api.get(f"/v1/windows/{PN}/{WA}", headers=auth(WRITER))
        after = await answers(api, (*PEOPLE, BSUID))
    finally:
        await api.close()

    assert window.status == 404  # erased
    refused = {k: v for k, v in before.items() if not v[0] and v[1] != "no_opt_in"}
    assert refused  # the opt-outs refused something before
    for key, (_, reason, _) in before.items():
        if key in refused:
            assert after[key] == (False, reason, True), key
        else:
            assert after[key][2] is False, key  # nothing refused for what was allowed
    # the STOP refuses every template, under the BSUID as well as the wa_id
    assert after[BSUID, "template:utility"] == (False, "opted_out", True)
    assert after[PREFS, "template:marketing"] == (False, "marketing_opted_out", True)
    assert after[FAILED, "template:marketing"] == (False, "marketing_opted_out", True)
    if policy == "enforce":
        assert after[RECORDED, "template:utility"] == (False, "opted_out_of_category", True)


async def test_a_newer_opt_in_lifts_it_for_its_category_and_all_lifts_everything(
    s: Scenario, publisher: Publisher
) -> None:
    api = await client_for(api_settings(s, "off"), s, publisher)
    try:
        await opt_outs(s, api)
        await s.process()
        await erase(s, api, WA, PREFS)
        now = int(time.time()) + 1  # after the erasure's second (what shares it is erased)
        await record(api, user=WA, category="marketing", decision="opt_in", at=now)
        await s.post(samples.preference(PREFS, "resume", now))  # the person resumes on WhatsApp
        await s.process()
        wa = await answers(api, (WA,))
        prefs = await answers(api, (PREFS,))
        await record(api, user=WA, category="all", decision="opt_in", at=now + 1)
        await s.process()
        wa_all = await answers(api, (WA,))
    finally:
        await api.close()

    assert wa[WA, "template:marketing"] == (True, None, False)
    assert wa[WA, "template:utility"] == (False, "opted_out", True)
    assert prefs[PREFS, "template:marketing"] == (True, None, False)
    assert wa_all[WA, "template:utility"] == (True, None, False)


async def test_it_holds_after_a_replay_and_a_rebuild_from_kafka_without_its_sources(
    s: Scenario, publisher: Publisher
) -> None:
    """The records it came from are tombstoned first: the consent topic keeps only the
    erasure and the suppression, the webhook topic is replayed whole."""
    api = await client_for(api_settings(s, "enforce"), s, publisher)
    try:
        await opt_outs(s, api)
        await s.process()
        await erase(s, api, *PEOPLE)
        before = await answers(api, PEOPLE)
        assert s.settings.kafka_bootstrap
        consent = await read_all(s.settings.kafka_bootstrap, s.topics.consent_events)

        replay = await s.worker(group="replay-everything")
        await replay.drain()
        replayed = await answers(api, PEOPLE)

        await s.redis.flushdb()
        rebuilt = await s.worker(group="rebuild")
        await rebuilt.drain()
        after_rebuild = await answers(api, PEOPLE)

        # what compaction leaves of the consent topic (the tombstoned records gone), and the
        # whole webhook topic, into new topics: a rebuild from those alone
        await s.redis.flushdb()
        compacted = await rebuild_from_compacted(s)
        after_compaction = await answers(api, PEOPLE)
    finally:
        await api.close()

    kinds = [orjson.loads(r.value)["kind"] if r.value else None for r in consent]
    tombstoned = {r.key for r in consent if r.value is None}
    recorded_ids = {r.key for r in consent if r.value and b'"kind":"consent"' in r.value}
    assert recorded_ids <= tombstoned  # the recorded opt-out's record is tombstoned
    assert "suppression" in kinds
    assert before[WA, "template:utility"] == (False, "opted_out", True)
    assert before[PREFS, "template:marketing"] == (False, "marketing_opted_out", True)
    assert before[FAILED, "template:marketing"] == (False, "marketing_opted_out", True)
    assert before[RECORDED, "template:utility"] == (False, "opted_out_of_category", True)
    assert replayed == before
    assert after_rebuild == before
    assert {r["kind"] for r in compacted} == {"erasure", "suppression"}
    assert after_compaction == before


async def rebuild_from_compacted(s: Scenario) -> list[dict[str, Any]]:
    """Copy the webhook topic whole and the consent topic as compaction leaves it (the
    newest record of each key, none for a tombstone) into new topics, and run a worker of a
    new group on them to their end; returns the consent records copied."""
    assert s.settings.kafka_bootstrap
    bootstrap = s.settings.kafka_bootstrap
    copy = Topics(new_prefix())
    await create_topics(bootstrap, copy, partitions=3, replication_factor=1)
    latest: dict[bytes, bytes | None] = {}
    for r in await read_all(bootstrap, s.topics.consent_events):
        latest[r.key] = r.value
    kept = {k: v for k, v in latest.items() if v is not None}
    webhooks = await read_all(bootstrap, s.topics.webhook_events)
    publisher = Publisher(bootstrap, ack_timeout_ms=5000)
    await publisher.start()
    try:
        await publisher.publish(
            [Record(copy.consent_events, v, k) for k, v in kept.items()]
            + [Record(copy.webhook_events, r.value, r.key) for r in webhooks]
        )
        worker = Worker(
            bootstrap=bootstrap,
            topics=copy,
            group_id="rebuild-compacted",
            store=s.store,
            publisher=publisher,
            suppression=SuppressionConfig.of(SUPPRESSION_KEY.encode()),
        )
        await worker.start()
        try:
            await worker.drain()
        finally:
            await worker.stop()
    finally:
        await publisher.stop()
    return [orjson.loads(v) for v in kept.values()]


async def opt_out_and_erase(s: Scenario, publisher: Publisher, *users: str) -> None:
    """The four people opt out, then ``users`` are erased (policy off)."""
    api = await client_for(api_settings(s, "off"), s, publisher)
    try:
        await opt_outs(s, api)
        await s.process()
        await erase(s, api, *users)
    finally:
        await api.close()


async def test_what_an_erasure_leaves_names_no_plain_id(s: Scenario, publisher: Publisher) -> None:
    await opt_out_and_erase(s, publisher, WA)
    assert s.settings.kafka_bootstrap
    consent = await read_all(s.settings.kafka_bootstrap, s.topics.consent_events)
    [suppression] = [r.value for r in consent if r.value and b'"suppression"' in r.value]
    marks = {text(f) for f in await s.redis.hkeys(keys.ERASED)}
    stored = [text(k) for k in await s.redis.keys("*:s:*")]

    for plain in (WA.encode(), BSUID.encode()):
        assert plain not in suppression
    assert marks == {digest(SUPPRESSION_KEY.encode(), WABA, u) for u in (WA, BSUID)}
    assert len(stored) == 2
    assert not any(WA in k or BSUID in k for k in stored)


async def test_plain_erasure_marks_of_an_earlier_release_are_hashed_and_still_hold(
    s: Scenario,
) -> None:
    at = s.now - HOUR
    await s.redis.hset(keys.ERASED, f"{WABA}|{WA}", at)  # as releases before wrote it
    await s.inbound("wamid.old", at - 60)  # older than the erasure: dropped
    await s.inbound("wamid.new", at + 60)  # newer: a new relationship
    await s.process()

    marks = {text(f): int(v) for f, v in (await s.redis.hgetall(keys.ERASED)).items()}
    state = await s.store.conversation(keys.conversation_key(PN, WA))

    assert marks == {digest(SUPPRESSION_KEY.encode(), WABA, WA): at}
    assert state.inbound == [at + 60]  # the older message never reached the state


async def test_a_person_remembered_unmarked_is_asked_again_once_another_process_marks_them(
    s: Scenario,
) -> None:
    """A worker remembers the people it found unmarked; an erasure written by another process
    moves the epoch, so the next batch asks again and drops the person's older webhooks."""
    suppressions = Suppressions(s.store, SuppressionConfig.of(SUPPRESSION_KEY.encode()))
    here = ErasureMarks(s.redis, suppressions, HOUR)
    elsewhere = ErasureMarks(s.redis, suppressions, HOUR)
    event = {"waba_id": WABA, "user": {"wa_id": WA, "user_id": BSUID}, "timestamp": s.now - 60}

    before = (await here.erased([event]))(event)
    again = (await here.erased([event]))(event)  # remembered unmarked: not asked
    await elsewhere.mark(WABA, [BSUID], s.now)
    after = (await here.erased([event]))(event)

    assert (before, again, after) == (False, False, True)


async def test_a_rotated_key_still_finds_what_the_old_one_kept(
    s: Scenario, publisher: Publisher
) -> None:
    """A rotation puts the new key first and keeps the old one after it: what was kept under
    the old one still refuses, and older webhooks of the erased person are still dropped."""
    await opt_out_and_erase(s, publisher, WA)
    rotated = f"new-suppression-key,{SUPPRESSION_KEY}"
    worker = await s.worker(
        group="rotated",
        suppression=SuppressionConfig((b"new-suppression-key", SUPPRESSION_KEY.encode())),
    )
    late = samples.text_message("wamid.late", s.now - 4 * HOUR, "hi", wa_id=WA, user_id=BSUID)
    await s.post(samples.messages_change(messages=[late]))  # older than the erasure
    await worker.drain()
    api = await client_for(api_settings(s, "off", WAWINDOW_SUPPRESSION_KEY=rotated), s, publisher)
    try:
        after = await answers(api, (WA, BSUID))
        window = await api.get(f"/v1/windows/{PN}/{WA}", headers=auth(WRITER))
    finally:
        await api.close()
    only_new = await client_for(
        api_settings(s, "off", WAWINDOW_SUPPRESSION_KEY="new-suppression-key"), s, publisher
    )
    try:
        forgotten = await answers(only_new, (WA,))
    finally:
        await only_new.close()

    assert after[WA, "template:utility"] == (False, "opted_out", True)
    assert after[BSUID, "template:marketing"] == (False, "opted_out", True)
    assert window.status == 404  # the late message of before the erasure was dropped
    assert forgotten[WA, "template:utility"] == (True, None, False)  # the old key is needed


@pytest.mark.parametrize("roles", ["worker", "api", "all"])
def test_the_roles_that_erase_or_check_refuse_to_start_without_the_key(
    services: Services, roles: str
) -> None:
    env = {**base_env(services, "unused."), "WAWINDOW_REDIS_URL": services.redis_url}
    env["WAWINDOW_API_TOKENS"] = "t"
    env.pop("WAWINDOW_SUPPRESSION_KEY")

    result = run(["run", roles], env)

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "WAWINDOW_SUPPRESSION_KEY" in line
