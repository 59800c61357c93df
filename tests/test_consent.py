"""Consent and erasure against the real services: the API puts each change on Kafka before it
answers, the worker applies it into Redis, send-check respects it, and an emptied Redis is
rebuilt from Kafka."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.apps import create_api_app
from tests.conftest import SUPPRESSION_KEY, Services
from tests.engine_harness import HOUR, Scenario
from tests.kafkautil import read_all, values
from wawindow import keys
from wawindow.config import Settings
from wawindow.dev import samples
from wawindow.engine.people import People
from wawindow.kafka.publisher import Publisher

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PN = samples.PHONE_NUMBER_ID
WABA = samples.WABA_ID
WA = "16505551234"
BSUID = "US.13491208655302741918"
READER = "read-only-token"
WRITER = "write-token"
LIMITED = "limited-writer"  # may write, but only for another WABA

ApiClient = TestClient[web.Request, web.Application]


def api_settings(s: Scenario, policy: str = "enforce", **extra: str) -> Settings:
    return Settings.from_env(
        {
            "WAWINDOW_API_TOKENS": READER,
            "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
            "WAWINDOW_API_WRITE_TOKENS": f"{WRITER},{LIMITED}=999",
            "WAWINDOW_TOPIC_PREFIX": s.topics.prefix,
            "WAWINDOW_CONSENT_POLICY": policy,
            "WAWINDOW_CONSENT_CATEGORIES": "marketing,utility,authentication,offers",
            **extra,
        }
    )


async def client_for(settings: Settings, s: Scenario, publisher: Publisher) -> ApiClient:
    client: ApiClient = TestClient(
        TestServer(create_api_app(settings, s.store, publisher=publisher))
    )
    await client.start_server()
    return client


@pytest.fixture
async def api(s: Scenario, publisher: Publisher) -> AsyncIterator[ApiClient]:
    client = await client_for(api_settings(s), s, publisher)
    try:
        yield client
    finally:
        await client.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def record(api: ApiClient, token: str = WRITER, **body: Any) -> tuple[int, Any]:
    payload = {"waba_id": WABA, "user": WA, "category": "marketing", "decision": "opt_in"}
    payload |= body
    response = await api.post("/v1/consents", json=payload, headers=auth(token))
    return response.status, await response.json()


async def consent(api: ApiClient, user: str = WA, token: str = READER) -> tuple[int, Any]:
    response = await api.get(f"/v1/consents/{WABA}/{user}", headers=auth(token))
    return response.status, await response.json()


async def check(api: ApiClient, kind: str, user: str = WA, **params: str) -> Any:
    response = await api.get(
        "/v1/send-check",
        params={"phone_number_id": PN, "user": user, "kind": kind, **params},
        headers=auth(READER),
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def test_an_opt_in_is_on_kafka_when_answered_and_on_file_once_applied(
    s: Scenario, api: ApiClient
) -> None:
    at = "2026-11-20T10:00:00Z"
    status, body = await record(
        api, at=at, source="website_form", wording="v3", proof="f-88", recorded_by="jane"
    )
    assert s.settings.kafka_bootstrap
    on_kafka = values(await read_all(s.settings.kafka_bootstrap, s.topics.consent_events))
    before, _ = await consent(api)

    await s.process()
    after, shown = await consent(api)

    assert status == 202
    assert [r["event_id"] for r in on_kafka] == [body["id"]]
    assert before == 404  # acknowledged means on Kafka; the worker has not applied it yet
    assert after == 200
    assert shown["categories"]["marketing"] == {
        "state": "opted_in",
        "at": at,
        "source": "website_form",
    }
    assert shown["categories"]["utility"]["state"] == "unknown"
    [entry] = shown["history"]
    assert (entry["id"], entry["wording"], entry["proof"]) == (body["id"], "v3", "f-88")
    assert entry["recorded_by"].startswith("api:")  # who authenticated, then who they say
    assert entry["recorded_by"].endswith(" (jane)")
    assert WRITER not in str(shown)


async def test_a_repeated_request_changes_nothing(s: Scenario, api: ApiClient) -> None:
    first = await record(api, at=1_790_000_000)
    again = await record(api, at=1_790_000_000)
    await s.process()
    _, shown = await consent(api)

    assert first == again
    assert len(shown["history"]) == 1
    assert (await s.event_types()).count("consent.changed") == 1


async def test_the_newest_decision_wins_whatever_order_it_arrives_in(
    s: Scenario, api: ApiClient
) -> None:
    await record(api, decision="opt_out", at=1_790_000_100)
    await record(api, decision="opt_in", at=1_790_000_000)  # older, recorded later
    await s.process()
    _, shown = await consent(api)

    assert shown["categories"]["marketing"]["state"] == "opted_out"
    assert [h["decision"] for h in shown["history"]] == ["opt_out", "opt_in"]  # newest first


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": "fax"}, "category"),
        ({"decision": "maybe"}, "decision"),
        ({"at": "yesterday"}, "at"),
        ({"at": 99_999_999_999}, "at"),
        ({"user": "not a user"}, "user"),
        ({"waba_id": ""}, "waba_id"),
        ({"waba_id": "abc"}, "waba_id"),
        ({"wordng": "v2 of the form"}, "wordng"),
        ({"proof_ref": "box-7"}, "proof_ref"),
        ({"wording": 5}, "wording"),
        ({"source": "x" * 501}, "source"),
    ],
)
async def test_bad_input_is_400_naming_the_field_and_stores_nothing(
    s: Scenario, api: ApiClient, body: dict[str, Any], field: str
) -> None:
    status, answer = await record(api, **body)
    assert s.settings.kafka_bootstrap

    assert (status, answer["error"]) == (400, "bad_field")
    assert answer["detail"].startswith(f"{field}:")
    assert await read_all(s.settings.kafka_bootstrap, s.topics.consent_events) == []


async def test_a_body_that_is_not_json_is_400_and_a_huge_one_413_both_as_json(
    api: ApiClient,
) -> None:
    broken = await api.post("/v1/consents", data=b"{", headers=auth(WRITER))
    odd_charset = await api.post(
        "/v1/consents",
        data=b'{"waba_id": "1", "user": "12345", "category": "all", "decision": "opt_in"}',
        headers={**auth(WRITER), "Content-Type": "application/json; charset=bogus"},
    )
    huge = await api.post(
        "/v1/consents", data=b'{"source": "' + b"x" * 100_000 + b'"}', headers=auth(WRITER)
    )

    assert (broken.status, (await broken.json())["error"]) == (400, "bad_field")
    assert odd_charset.status == 202
    assert (huge.status, (await huge.json())["error"]) == (413, "payload_too_large")


async def test_read_only_tokens_cannot_write_and_tenancy_holds(s: Scenario, api: ApiClient) -> None:
    await record(api, at=1_790_000_000)
    await s.process()

    refused, answer = await record(api, READER)
    erase = await api.delete(f"/v1/users/{WABA}/{WA}", headers=auth(READER))
    other_waba, _ = await record(api, LIMITED)
    other_erase = await api.delete(f"/v1/users/{WABA}/{WA}", headers=auth(LIMITED))
    other_read, _ = await consent(api, token=LIMITED)
    mine, _ = await consent(api, token=WRITER)  # a write token reads too

    assert (refused, answer["error"]) == (403, "forbidden")
    assert erase.status == 403
    assert other_waba == other_erase.status == other_read == 404
    assert mine == 200


async def test_enforce_needs_an_opt_in_for_the_category_and_honours_a_newer_opt_out(
    s: Scenario, api: ApiClient
) -> None:
    await s.inbound("wamid.in", s.now - 2 * HOUR)
    await s.process()
    never = await check(api, "template:marketing")
    in_window = await check(api, "free_form")

    await record(api, at=s.now - HOUR)
    await s.process()
    opted_in = await check(api, "template:marketing")
    utility = await check(api, "template:utility")

    await record(api, decision="opt_out", category="all", at=s.now - 60)
    await s.process()
    opted_out = await check(api, "template:marketing")

    assert (never["allowed"], never["reason"]) == (False, "no_opt_in")
    assert never["consent"] == {"marketing": "unknown"}
    assert (in_window["allowed"], in_window["reason"]) == (True, None)  # the window decides
    assert (opted_in["allowed"], opted_in["consent"]) == (True, {"marketing": "opted_in"})
    assert utility["reason"] == "no_opt_in"
    assert (opted_out["allowed"], opted_out["reason"]) == (False, "opted_out_of_category")


async def test_a_keyword_stop_is_lifted_by_a_newer_opt_in_and_consent_holds_before_any_webhook(
    s: Scenario, api: ApiClient
) -> None:
    await s.inbound("wamid.stop", s.now - 3 * HOUR, text="STOP")
    await s.process()
    stopped = await check(api, "template:authentication")

    await record(api, category="authentication", at=s.now - HOUR, source="phone")
    # a person who never wrote, from an imported opt-in list, on a number already known
    await record(api, user="16505550199", category="offers", at=s.now - HOUR)
    await s.process()
    lifted = await check(api, "template:authentication")
    marketing = await check(api, "template:marketing")
    stranger = await check(api, "template:marketing", user="16505550199", consent_category="offers")
    _, shown = await consent(api)

    assert (stopped["allowed"], stopped["reason"]) == (False, "opted_out")
    assert (lifted["allowed"], lifted["reason"]) == (True, None)
    assert (marketing["allowed"], marketing["reason"]) == (False, "opted_out")
    assert (stranger["allowed"], stranger["consent"]) == (True, {"offers": "opted_in"})
    assert [h["source"] for h in shown["history"]] == ["phone", "whatsapp_keyword"]


async def test_record_policy_answers_as_off_and_says_what_is_on_file(
    s: Scenario, publisher: Publisher
) -> None:
    client = await client_for(api_settings(s, "record"), s, publisher)
    try:
        answer = await check(client, "template:marketing")
        bad = await client.get(
            "/v1/send-check",
            params={"phone_number_id": PN, "user": WA, "kind": "template:utility",
                    "consent_category": "fax"},
            headers=auth(READER),
        )  # fmt: skip
        detail = (await bad.json())["detail"]
    finally:
        await client.close()

    assert (answer["allowed"], answer["consent"]) == (True, {"marketing": "unknown"})
    assert bad.status == 400
    assert "consent_category" in detail


async def test_an_erased_person_stays_erased_after_a_replay_of_every_webhook(
    s: Scenario, api: ApiClient
) -> None:
    t0 = s.now - 5 * HOUR
    await s.post(
        samples.messages_change(
            messages=[samples.text_message("wamid.1", t0, wa_id=WA, user_id=BSUID)]
        )
    )
    await s.status("wamid.reply", "delivered", t0 + 60, wa_id=WA)
    _, change = await record(api, at=t0)
    await s.process()
    counted = await s.counts()

    response = await api.delete(f"/v1/users/{WABA}/{BSUID}", headers=auth(WRITER))
    erasure = (await response.json())["id"]
    await s.process()
    windows = [
        (await api.get(f"/v1/windows/{PN}/{u}", headers=auth(READER))).status for u in (WA, BSUID)
    ]
    gone = [(await consent(api, u))[0] for u in (WA, BSUID)]
    events = await s.events()
    assert s.settings.kafka_bootstrap
    on_topic = await read_all(s.settings.kafka_bootstrap, s.topics.consent_events)

    replay = await s.worker(group="replay-everything")
    await replay.drain()
    after_replay = (await api.get(f"/v1/windows/{PN}/{WA}", headers=auth(READER))).status
    counted_after = await s.counts()

    # the person writes again, after the erasure: a new relationship
    await s.inbound("wamid.new", int(time.time()) + 2)
    await s.process()
    again = await api.get(f"/v1/windows/{PN}/{WA}", headers=auth(READER))

    assert response.status == 202
    assert windows == [404, 404]
    assert gone == [404, 404]
    [erased] = [e for e in events if e["type"] == "wawindow.user.erased"]
    assert erased["id"]
    assert erased["data"]["ids"] == sorted([WA, BSUID])
    assert erasure
    assert erased["source"] == f"wawindow/waba/{WABA}"
    tombstones = [r.key.decode() for r in on_topic if r.value is None]
    assert tombstones == [change["id"]]  # Kafka forgets the erased change at compaction
    assert counted_after == counted  # aggregates stay, and the replay counted nothing again
    assert after_replay == 404
    assert again.status == 200
    assert (await again.json())["service_window"]["opened_at"] is not None


async def test_redis_emptied_and_rebuilt_from_kafka_gives_back_the_same_consent(
    s: Scenario, api: ApiClient
) -> None:
    await s.inbound("wamid.stop", s.now - 4 * HOUR, text="STOP")
    await record(api, at=s.now - 3 * HOUR, source="website_form")
    await record(api, category="utility", decision="opt_out", at=s.now - 2 * HOUR)
    await record(api, user="16505550188", category="all", at=s.now - HOUR)
    await record(api, user="16505550177", at=s.now - HOUR)
    await s.process()
    await api.delete(f"/v1/users/{WABA}/16505550177", headers=auth(WRITER))
    await s.process()
    users = (WA, "16505550188", "16505550177")
    before = [await consent(api, u) for u in users]

    await s.redis.flushdb()
    rebuilt = await s.worker(group="rebuild")
    await rebuilt.drain()
    after = [await consent(api, u) for u in users]

    assert [b[0] for b in before] == [200, 200, 404]
    assert after == before


async def test_kafka_down_means_503_and_nothing_recorded(s: Scenario, tmp_path: Path) -> None:
    from wawindow.config import cache_dir
    from wawindow.devservices.broker import KafkaBroker, fetch_jars
    from wawindow.kafka.topics import create_topics

    broker = KafkaBroker(fetch_jars(cache_dir()), tmp_path / "kafka", heap_mb=384)
    broker.start()
    try:
        await create_topics(broker.bootstrap, s.topics, partitions=1, replication_factor=1)
        own = Publisher(broker.bootstrap, ack_timeout_ms=1500)
        await own.start()
        client = await client_for(api_settings(s), s, own)
        try:
            broker.stop()
            status, answer = await record(client)
            erase = await client.delete(f"/v1/users/{WABA}/{WA}", headers=auth(WRITER))
        finally:
            await client.close()
            await own.stop()
    finally:
        broker.stop()

    assert (status, answer["error"]) == (503, "kafka_unavailable")
    assert erase.status == 503


async def test_the_consent_topic_is_compacted_and_kept_without_an_age_limit(s: Scenario) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    assert s.settings.kafka_bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=s.settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, s.topics.consent_events)]
        )
    finally:
        await admin.close()
    configs = {name: value for name, value, *_ in response.resources[0][4]}

    assert configs["cleanup.policy"] == "compact"
    assert configs["retention.ms"] == "-1"


def cli_env(s: Scenario, services: Services) -> dict[str, str]:
    from tests.cliutil import base_env
    from tests.conftest import redis_db1

    env = base_env(services, s.topics.prefix)
    env["WAWINDOW_REDIS_URL"] = redis_db1(services)
    env["WAWINDOW_CONSENT_CATEGORIES"] = "marketing,utility,authentication,offers"
    return env


async def test_the_cli_records_shows_imports_and_erases(
    s: Scenario, services: Services, tmp_path: Path
) -> None:
    from tests.cliutil import run

    env = cli_env(s, services)
    recorded = run(
        ["consent", "record", WABA, WA, "opt_in", "--category", "utility",
         "--at", "1793523600", "--source", "paper", "--proof", "box-7"],
        env,
    )  # fmt: skip
    bad = run(["consent", "record", WABA, WA, "opt_in", "--category", "fax"], env)
    lines = [f"{WABA},1650555{n:04d},offers,opt_in,2026-11-0{n % 9 + 1}T10:00:00Z,import"
             for n in range(1200)]  # fmt: skip
    lines.append(f"{WABA},16505559999,offers,opt_in,1793523600,import")  # Unix seconds
    rows = ["waba_id,user,category,decision,at,source", *lines, f"{WABA},nobody,offers,opt_in,"]
    csv_file = tmp_path / "optins.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    first = run(["consent", "import", str(csv_file), "--quiet"], env)
    progress = (tmp_path / "optins.csv.progress").read_text().strip()
    again = run(["consent", "import", str(csv_file), "--quiet", "--restart"], env)
    await s.process()
    shown = run(["consent", "show", WABA, WA], env)
    imported = run(["consent", "show", WABA, "16505550042"], env)
    assert s.settings.kafka_bootstrap
    on_kafka = await read_all(s.settings.kafka_bootstrap, s.topics.consent_events)

    unconfirmed = run(["consent", "erase", WABA, WA], env)  # no terminal, no --yes
    declined = run(["consent", "erase", WABA, WA], env, stdin="no\n")
    erased = run(["consent", "erase", WABA, WA, "--yes"], env)
    await s.process()
    after = run(["consent", "show", WABA, WA], env)
    rerun = run(["consent", "import", str(csv_file), "--quiet", "--restart"], env)
    on_kafka_after = await read_all(s.settings.kafka_bootstrap, s.topics.consent_events)

    assert recorded.returncode == 0, recorded.stderr
    assert (bad.returncode, "category:" in bad.stderr) == (2, True)
    assert (first.returncode, again.returncode) == (1, 1)  # the one bad row, both times
    assert "line 1203: at: is required" in first.stderr
    assert progress == "1201"
    assert len(on_kafka) == 1 + 2 * 1201  # imported twice: the same ids, one change each
    view = orjson.loads(shown.stdout)
    assert view["categories"]["utility"] == {
        "state": "opted_in",
        "at": "2026-11-01T09:00:00Z",
        "source": "paper",
    }
    assert view["history"][0]["recorded_by"].startswith("cli")
    assert len(orjson.loads(imported.stdout)["history"]) == 1
    assert (unconfirmed.returncode, "pass --yes" in unconfirmed.stderr) == (2, True)
    assert declined.returncode == 1
    assert erased.returncode == 0, erased.stderr
    assert f"erasure of {WA} at WABA {WABA} recorded" in erased.stdout
    assert after.returncode == 1
    # a rerun after the worker applied the file sends nothing and says so
    assert rerun.stdout.strip().endswith("0 new, 1201 already on record, 1 skipped")
    assert first.stdout.strip().endswith("1201 new, 0 already on record, 1 skipped")
    unix = run(["consent", "show", WABA, "16505559999"], env)
    assert orjson.loads(unix.stdout)["history"][0]["at"] == "2026-11-01T09:00:00Z"
    before = {(r.partition, r.offset) for r in on_kafka}
    since = [
        orjson.loads(r.value)
        for r in on_kafka_after
        if r.value and (r.partition, r.offset) not in before
    ]
    assert [r["kind"] for r in since] == ["erasure"]  # the rerun sent no change again


async def test_an_opt_out_on_one_number_holds_on_every_number_of_the_waba(
    s: Scenario, api: ApiClient
) -> None:
    other = "106540352242999"
    await record(api, category="all", at=s.now - 3 * HOUR)
    stop = samples.text_message("wamid.stop", s.now - HOUR, "STOP", wa_id=WA)
    await s.post(samples.messages_change(messages=[stop], phone_number_id=other))
    await s.inbound("wamid.hi", s.now - 2 * HOUR)  # the asked number knows the person too
    await s.process()

    answer = await check(api, "template:utility")  # asked on the number that heard no STOP

    assert (answer["allowed"], answer["reason"]) == (False, "opted_out")


async def test_an_erased_person_with_conversations_stays_erased_when_redis_is_rebuilt(
    s: Scenario, api: ApiClient
) -> None:
    await s.inbound("wamid.1", s.now - 3 * HOUR)
    await s.status("wamid.reply", "delivered", s.now - 3 * HOUR + 60)
    await record(api, at=s.now - 3 * HOUR)
    await s.process()
    await api.delete(f"/v1/users/{WABA}/{WA}", headers=auth(WRITER))
    await s.process()
    late = samples.status("wamid.reply", "read", int(time.time()) + 1, wa_id=WA)
    await s.post(samples.messages_change(statuses=[late]))  # a read receipt after the erasure
    await s.process()
    window = f"/v1/windows/{PN}/{WA}"
    before = (await api.get(window, headers=auth(READER))).status

    await s.redis.flushdb()
    rebuilt = await s.worker(group="rebuild-erased")
    await rebuilt.drain()
    after = (await api.get(window, headers=auth(READER))).status
    shown, _ = await consent(api)

    assert (before, after, shown) == (404, 404, 404)


async def test_a_scoped_token_may_check_a_first_contact_of_its_own_waba_only(
    s: Scenario, publisher: Publisher
) -> None:
    settings = api_settings(s, WAWINDOW_API_TOKENS=f"mine={WABA},theirs=999")
    client = await client_for(settings, s, publisher)
    try:
        params = {"phone_number_id": PN, "user": "16505550111", "kind": "template:utility"}
        mine = await client.get(
            "/v1/send-check", params={**params, "waba_id": WABA}, headers=auth("mine")
        )
        theirs = await client.get(
            "/v1/send-check", params={**params, "waba_id": WABA}, headers=auth("theirs")
        )
        answer = await mine.json()
    finally:
        await client.close()

    assert (mine.status, answer["reason"]) == (200, "no_opt_in")
    assert theirs.status == 404


async def test_a_wabas_numbers_are_its_own_now_and_older_notes_still_count(s: Scenario) -> None:
    # pn-9 noted before the WABAs' own sets were kept; pn-8 noted again since
    await s.redis.hset(keys.NUMBERS, mapping={"pn-9": "waba-c", "pn-8": "waba-c"})
    await s.redis.sadd(keys.waba_numbers("waba-c"), "pn-8")
    people = People(s.store)
    assert await people.numbers_of("waba-c") == ["pn-8", "pn-9"]

    await people.note_numbers([("pn-1", "waba-a"), ("pn-2", "waba-a"), ("pn-3", "waba-b")], 0.0)
    assert await people.numbers_of("waba-a") == ["pn-1", "pn-2"]
    assert await s.redis.smembers(keys.waba_numbers("waba-b")) == {b"pn-3"}

    await people.note_numbers([("pn-2", "waba-b")], 1.0)  # the number moved to another WABA
    assert await people.numbers_of("waba-a") == ["pn-1"]
    assert await people.numbers_of("waba-b") == ["pn-2", "pn-3"]
    assert await People(s.store).numbers_of("waba-c") == ["pn-8", "pn-9"]
