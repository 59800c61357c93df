"""The AsyncAPI 3 document of the topics: it names every topic and every event type the engine
emits, and real events from a scenario on the real services fit its schemas."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.engine_harness import HOUR, Scenario
from tests.kafkautil import read_all, values
from wawindow import samples
from wawindow.keys import Topics

DOC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent.parent / "docs" / "asyncapi.yaml").read_text()
)
REGISTRY: Registry[Any] = Registry().with_resource(
    "urn:asyncapi", Resource.from_contents(DOC, default_specification=DRAFT7)
)
MESSAGES = DOC["components"]["messages"]
BY_TYPE = {m["name"]: key for key, m in MESSAGES.items() if m["name"].startswith("wawindow.")}


def emitted_types() -> set[str]:
    """Every ``emit("…")`` in the engine's Lua scripts."""
    lua = resources.files("wawindow.engine").joinpath("lua")
    found: set[str] = set()
    for script in lua.iterdir():
        if script.name.endswith(".lua"):
            found |= set(re.findall(r'emit\("([a-z_]+\.[a-z_]+)"', script.read_text()))
    return {f"wawindow.{t}" for t in found}


def valid(message: str, value: Any) -> None:
    schema = {"$ref": f"urn:asyncapi#/components/messages/{message}/payload"}
    Draft7Validator(schema, registry=REGISTRY).validate(value)


def test_the_document_is_asyncapi_3_naming_every_topic() -> None:
    addresses = {
        c["address"].replace("{prefix}", Topics().prefix) for c in DOC["channels"].values()
    }

    assert DOC["asyncapi"].startswith("3.")
    assert addresses == set(Topics().all())
    for operation in DOC["operations"].values():
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in DOC["channels"]


def test_every_event_type_the_engine_emits_is_documented_and_nothing_else() -> None:
    assert emitted_types() == set(BY_TYPE)
    window_messages = {r["$ref"].rsplit("/", 1)[1] for r in
                       DOC["channels"]["windowEvents"]["messages"].values()}  # fmt: skip
    assert window_messages == set(BY_TYPE.values())


async def test_real_events_fit_the_documented_schemas(s: Scenario) -> None:
    t0 = s.now - 30 * HOUR
    fep = samples.pmp_pricing("referral_conversion", "free_entry_point")
    ad = samples.text_message("wamid.ad", t0, referral=samples.ad_referral())
    await s.post(samples.messages_change(messages=[ad]))
    await s.status("wamid.reply", "delivered", t0 + 60, pricing=fep)
    await s.inbound("wamid.again", t0 + 120)
    await s.inbound("wamid.stop", t0 + 180, text="STOP", user="16505550000")
    await s.inbound("wamid.soon", s.now - 23 * HOUR - 1800, user="16505550001")
    await s.process()
    await s.sweep(s.now)
    await s.sweep(s.now + 80 * HOUR)

    events = await s.events()
    assert s.settings.kafka_bootstrap is not None
    raw = values(await read_all(s.settings.kafka_bootstrap, s.topics.webhook_events))

    assert {e["type"] for e in events} == emitted_types()  # every type, for real
    for event in events:
        valid(BY_TYPE[event["type"]], event)
    for record in raw:
        valid("webhookEvent", record)
    assert raw
    broken = dict(events[0], data={k: v for k, v in events[0]["data"].items() if k != "user"})
    with pytest.raises(ValidationError):
        valid(BY_TYPE[broken["type"]], broken)
