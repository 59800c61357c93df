"""The AsyncAPI 3 document of the topics: it names every topic, every transition type and
event kind of :mod:`wawindow.contracts` and nothing else, and real events from scenarios on
the real services fit its schemas, field for field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.engine_harness import HOUR, Scenario
from tests.kafkautil import read_all, values
from wawindow.contracts import ChangeKind, EventKind, TransitionType
from wawindow.dev import samples
from wawindow.engine.cloudevents import to_cloudevent
from wawindow.engine.suppression import record_of
from wawindow.kafka import consent_records
from wawindow.kafka.consent_records import Categories, consent_record, erasure_record
from wawindow.keys import Topics, person_key
from wawindow.rules import people
from wawindow.rules.suppression import at_erasure

DOC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent.parent / "docs" / "asyncapi.yaml").read_text()
)
REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:asyncapi", Resource.from_contents(DOC, default_specification=DRAFT7)
)
MESSAGES = DOC["components"]["messages"]
BY_TYPE = {m["name"]: key for key, m in MESSAGES.items() if m["name"].startswith("wawindow.")}

#: every transition the rules emit, as published
TYPES = {f"wawindow.{t.value}" for t in TransitionType}
#: the transitions only facts learned late bring: the first scenario has none of them
CORRECTIONS = {
    f"wawindow.{t.value}"
    for t in (
        TransitionType.SERVICE_WINDOW_RETRACTED,
        TransitionType.ENTRY_POINT_WINDOW_RETRACTED,
        TransitionType.CONVERSATION_UPDATED,
        TransitionType.CONVERSATION_RETRACTED,
    )
}
#: a person's events (consent, erasure) come from consent-events, not from webhooks: see
#: test_a_persons_events_fit_the_documented_schemas and tests/test_consent.py
PERSON = {
    f"wawindow.{t.value}" for t in (TransitionType.CONSENT_CHANGED, TransitionType.USER_ERASED)
}


def valid(message: str, value: Any) -> None:
    schema = {"$ref": f"urn:asyncapi#/components/messages/{message}/payload"}
    Draft7Validator(schema, registry=REGISTRY).validate(value)


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def declared(node: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The properties a schema declares and those it requires, through ``$ref`` and ``allOf``."""
    node = resolve(node)
    properties, required = set(node.get("properties", {})), set(node.get("required", []))
    for part in node.get("allOf", []):
        more, needed = declared(part)
        properties |= more
        required |= needed
    return properties, required


def payload_property(message: str, name: str) -> dict[str, Any]:
    """The schema of a window-events message's ``type`` or ``data``."""
    (part,) = [p for p in MESSAGES[message]["payload"]["allOf"] if name in p.get("properties", {})]
    return resolve(part["properties"][name])


def data_fields(message: str) -> set[str]:
    return declared(payload_property(message, "data"))[0]


def fit(events: list[dict[str, Any]]) -> None:
    """Each event fits its type's schema and has exactly the fields it declares."""
    for event in events:
        valid(BY_TYPE[event["type"]], event)
        assert set(event["data"]) == data_fields(BY_TYPE[event["type"]]), event["type"]


def test_the_document_is_asyncapi_3_naming_every_topic() -> None:
    addresses = {
        c["address"].replace("{prefix}", Topics().prefix) for c in DOC["channels"].values()
    }

    assert DOC["asyncapi"].startswith("3.")
    assert addresses == set(Topics().all())
    for operation in DOC["operations"].values():
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in DOC["channels"]


def test_every_transition_type_is_documented_and_nothing_else() -> None:
    assert set(BY_TYPE) == TYPES
    window_messages = {r["$ref"].rsplit("/", 1)[1] for r in
                       DOC["channels"]["windowEvents"]["messages"].values()}  # fmt: skip
    assert window_messages == set(BY_TYPE.values())
    for name, message in BY_TYPE.items():
        assert payload_property(message, "type") == {"const": name}


def test_every_documented_field_of_a_transition_is_always_there() -> None:
    for message in BY_TYPE.values():
        properties, required = declared(MESSAGES[message]["payload"])
        assert properties == required, message
        data, needed = declared(payload_property(message, "data"))
        assert data == needed, message


def test_the_webhook_event_kinds_are_the_contracts_event_kinds() -> None:
    kinds = resolve(DOC["components"]["schemas"]["WebhookEvent"])["properties"]["kind"]["enum"]
    assert set(kinds) == {k.value for k in EventKind}


def record_messages() -> dict[str, dict[str, Any]]:
    """The record schemas of ``consent-events`` by message name (tombstones aside)."""
    channel = DOC["channels"]["consentEvents"]["messages"]
    payloads = {name: resolve(resolve(ref)["payload"]) for name, ref in channel.items()}
    return {name: p for name, p in payloads.items() if "kind" in p.get("properties", {})}


def test_the_consent_record_kinds_are_the_contracts_change_kinds() -> None:
    kinds = [k for p in record_messages().values() for k in p["properties"]["kind"]["enum"]]

    assert sorted(kinds) == sorted(k.value for k in ChangeKind)  # each kind has one schema
    for payload in record_messages().values():
        assert set(payload["properties"]) == set(payload["required"])


def test_the_records_the_api_and_cli_make_fit_the_documented_schemas() -> None:
    now = 1_750_000_000
    body = {
        "waba_id": "102290129340398",
        "user": "US.13491208655",
        "category": "marketing",
        "decision": "opt_in",
        "at": "2025-06-15T10:00:00Z",
        "source": "website_form",
        "wording": "v3",
        "proof": "form-123",
    }
    consent = consent_record(body, now, Categories(), "api:abc")
    bare = consent_record({**body, "user": "16505550000", "category": "all"}, now, Categories(),
                          "cli")  # fmt: skip
    erasure = erasure_record("102290129340398", "16505550000", now, "api:abc")

    for record in (consent, bare):
        valid("consentChange", record)
        assert set(record) == declared(record_messages()["consentChange"])[0]
    valid("erasure", erasure)
    assert set(erasure) == declared(record_messages()["erasure"])[0]
    valid("consentTombstone", None)
    ds = [people.decision_of(consent), people.decision_of({**bare, "decision": "opt_out"})]
    entry = at_erasure("102290129340398", now, ["0" * 32, "a" * 32], ds, [], ("marketing",), 9)
    suppression = record_of(entry)
    valid("suppression", suppression)
    assert set(suppression) == declared(record_messages()["suppression"])[0]
    assert consent_records.invalid(suppression) is None
    with pytest.raises(ValidationError):
        valid("suppression", {**suppression, "digests": ["16505550000"]})
    with pytest.raises(ValidationError):
        valid("suppression", {**suppression, "webhook": {"all": ["soon", "x", 0]}})
    with pytest.raises(ValidationError):
        valid("erasure", consent)
    with pytest.raises(ValidationError):
        valid("consentChange", {**consent, "decision": "maybe"})
    with pytest.raises(ValidationError):
        valid("consentChange", {k: v for k, v in consent.items() if k != "recorded_at"})


def test_a_persons_events_fit_the_documented_schemas() -> None:
    now = 1_750_000_000
    waba = "102290129340398"
    events = []
    for user in ("US.13491208655", "16505550000"):
        body = {"waba_id": waba, "user": user, "category": "marketing", "decision": "opt_out"}
        records = [
            consent_record(body, now - 60, Categories(), "api:abc"),
            {**erasure_record(waba, user, now, "api:abc"), "ids": [user]},
        ]
        out = people.apply(people.Person(), person_key(waba, user), records, now)
        events += [to_cloudevent(t) for t in out.transitions]

    assert [e["type"] for e in events] == [
        "wawindow.consent.changed", "wawindow.user.erased"
    ] * 2  # fmt: skip
    fit(events)
    for event in events:
        assert event["source"] == f"wawindow/waba/{waba}"
        assert "phone_number_id" not in event["data"]
    assert events[0]["data"]["user"] == {"user_id": "US.13491208655", "wa_id": None}
    assert events[2]["data"]["user"] == {"user_id": None, "wa_id": "16505550000"}
    assert events[0]["data"]["state"] == "opted_out"


async def windows_and_opt_outs(s: Scenario) -> None:
    """An entry point window replied to, a window open, a STOP, a window closing soon."""
    t0 = s.now - 30 * HOUR
    fep = samples.pmp_pricing("referral_conversion", "free_entry_point")
    ad = samples.text_message("wamid.ad", t0, referral=samples.ad_referral())
    await s.post(samples.messages_change(messages=[ad]))
    await s.status("wamid.reply", "delivered", t0 + 60, pricing=fep)
    await s.inbound("wamid.again", t0 + 120)
    await s.inbound("wamid.stop", t0 + 180, text="STOP", user="16505550000")
    await s.inbound("wamid.soon", s.now - 23 * HOUR - 1800, user="16505550001")


async def test_real_events_fit_the_documented_schemas(s: Scenario) -> None:
    await windows_and_opt_outs(s)
    await s.process()
    await s.sweep(s.now)
    await s.sweep(s.now + 80 * HOUR)

    events = await s.events()
    assert s.settings.kafka_bootstrap is not None
    raw = values(await read_all(s.settings.kafka_bootstrap, s.topics.webhook_events))

    # every type but those, for real
    assert {e["type"] for e in events} == TYPES - CORRECTIONS - PERSON
    fit(events)
    for record in raw:
        valid("webhookEvent", record)
    assert raw
    broken = dict(events[0], data={k: v for k, v in events[0]["data"].items() if k != "user"})
    with pytest.raises(ValidationError):
        valid(BY_TYPE[broken["type"]], broken)


async def corrections_learned_late(s: Scenario) -> None:
    """Windows, conversations and entry point windows that facts learned late correct: a
    retracted window, an updated and a retracted conversation, a retracted entry point."""
    marketing = samples.pmp_pricing("marketing", "regular")
    # two windows, then a late message between them joins them: the second is retracted
    t0 = s.now - 60 * HOUR
    await s.inbound("wamid.w1", t0, user="16505550010")
    await s.inbound("wamid.w2", t0 + 30 * HOUR, user="16505550010")
    # a read without pricing opens an "unknown" conversation; the late sent has the category
    await s.status("wamid.u", "read", s.now - 600, wa_id="16505550020")
    # a later delivery opens a conversation; an earlier one, learned late, takes it over
    await s.status("wamid.c2", "delivered", s.now - 600, wa_id="16505550030", pricing=marketing)
    # an entry point window, and a second one opened by a delivery 3 hours after its sending
    t1 = s.now - 100 * HOUR
    for wamid, at in (("wamid.ad1", t1), ("wamid.ad2", t1 + 74 * HOUR)):
        ad = samples.text_message(wamid, at, wa_id="16505550040", referral=samples.ad_referral())
        await s.post(samples.messages_change(messages=[ad]))
    await s.status("wamid.e1", "sent", t1 + HOUR, wa_id="16505550040")
    await s.status("wamid.e2", "delivered", t1 + 75 * HOUR, wa_id="16505550040")
    await s.process()

    await s.inbound("wamid.w3", t0 + 12 * HOUR, user="16505550010")
    await s.status("wamid.u", "sent", s.now - 602, wa_id="16505550020", pricing=marketing)
    await s.status("wamid.c1", "delivered", s.now - 900, wa_id="16505550030", pricing=marketing)
    await s.status("wamid.e2", "sent", t1 + 72 * HOUR, wa_id="16505550040")  # in the first
    await s.process()


async def test_corrections_learned_late_fit_the_documented_schemas(s: Scenario) -> None:
    await corrections_learned_late(s)

    events = await s.events()
    assert {e["type"] for e in events} <= TYPES
    assert {(e["type"], e["subject"]) for e in events} >= {
        ("wawindow.service_window.retracted", "16505550010"),
        ("wawindow.conversation.updated", "16505550020"),
        ("wawindow.conversation.retracted", "16505550030"),
        ("wawindow.entry_point_window.retracted", "16505550040"),
    }
    fit(events)
    (updated,) = [e for e in events if e["type"] == "wawindow.conversation.updated"]
    assert (updated["data"]["previous_category"], updated["data"]["category"]) == (
        "unknown",
        "marketing",
    )
