"""Every window-event type, for a user's conversation and for a group's, as the real worker
publishes it: read back through the CloudEvents SDK's Kafka binding (structured mode, as the
worker writes it) and checked against ``docs/asyncapi.yaml``. The group's events come from the
group bodies of ``tests/fixtures/meta`` and name the group."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

from tests.conftest import PAYLOADS
from tests.engine_harness import HOUR, Scenario
from tests.kafkautil import read_all
from tests.test_asyncapi import TYPES, corrections_learned_late, fit, windows_and_opt_outs
from tests.test_split import GROUP  # the group of the fixtures
from wawindow.dev import samples
from wawindow.engine.cloudevents import CONTENT_TYPE
from wawindow.kafka.consent_records import Categories, consent_record, erasure_record
from wawindow.kafka.publisher import Publisher, Record
from wawindow.keys import group_conversation_key

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PN = samples.PHONE_NUMBER_ID
WABA = samples.WABA_ID
#: what a group's conversation can go through (no ad replies, no opt-outs in these bodies)
GROUP_TYPES = {
    f"wawindow.{t}"
    for t in (
        "service_window.opened", "service_window.extended", "service_window.closing_soon",
        "service_window.closed", "service_window.retracted", "conversation.opened",
        "conversation.updated", "conversation.closed", "conversation.retracted",
    )
}  # fmt: skip


def fixture(name: str, at: int, wamid: str | None = None, **changes: Any) -> bytes:
    """A body of ``tests/fixtures/meta`` moved to ``at`` (every item's timestamp), its item
    given ``wamid``, its status items changed by ``changes`` (a value of None drops the
    field)."""
    body = orjson.loads((PAYLOADS / name).read_bytes())
    [change] = body["entry"][0]["changes"]
    for item in change["value"].get("messages", []):
        item["timestamp"] = str(at)
        item["id"] = wamid or item["id"]
    for item in change["value"].get("statuses", []):
        item["timestamp"] = str(at)
        item["id"] = wamid or item["id"]
        for field, value in changes.items():
            if value is None:
                item.pop(field, None)
            else:
                item[field] = value
    return orjson.dumps(body)


async def group_timeline(s: Scenario) -> None:
    """A group's windows and conversations, the late facts that correct them included."""
    n = s.now
    said, sent, delivered = (
        "group_inbound_text.json",
        "group_status_sent.json",
        "group_status_delivered_participant.json",
    )
    await s.post_body(fixture(said, n - 100 * HOUR, "wamid.g.w1"))
    await s.post_body(fixture(said, n - 70 * HOUR, "wamid.g.w2"))
    await s.post_body(fixture(sent, n - 99 * HOUR, "wamid.g.out1"))
    await s.post_body(fixture(delivered, n - 99 * HOUR + 5, "wamid.g.out1"))
    # Meta put the pricing on the delivery, which comes late: the read opens it unknown
    await s.post_body(fixture(delivered, n - 600, "wamid.g.u", status="read", pricing=None))
    # a later delivery opens a conversation; an earlier one, learned late, takes it over
    await s.post_body(fixture(delivered, n - 3 * HOUR, "wamid.g.c2"))
    await s.post_body(fixture("group_status_failed.json", n - 2 * HOUR))
    await s.post_body(fixture(said, n - 23 * HOUR - 1800, "wamid.g.soon"))
    await s.process()

    await s.post_body(fixture(said, n - 85 * HOUR, "wamid.g.w3"))  # joins the first two
    await s.post_body(fixture(delivered, n - 602, "wamid.g.u"))
    await s.post_body(fixture(delivered, n - 4 * HOUR, "wamid.g.c1"))
    await s.process()


async def user_timeline(s: Scenario) -> None:
    """Users' windows, entry point windows, conversations and opt-outs, late facts included
    (as in tests/test_asyncapi.py)."""
    await windows_and_opt_outs(s)
    await corrections_learned_late(s)


async def person_timeline(s: Scenario) -> None:
    """A consent decision and an erasure, put on consent-events as the API puts them."""
    assert s.settings.kafka_bootstrap
    user = "US.13491208655302741918"
    body = {"waba_id": WABA, "user": user, "category": "marketing", "decision": "opt_in"}
    records = [
        consent_record(body, s.now - 60, Categories(), "api:test"),
        erasure_record(WABA, user, s.now, "api:test"),
    ]
    publisher = Publisher(s.settings.kafka_bootstrap, ack_timeout_ms=5000)
    await publisher.start()
    try:
        for rec in records:  # one at a time: the erasure comes after the decision
            topic = s.topics.consent_events
            await publisher.publish([Record(topic, orjson.dumps(rec), rec["event_id"].encode())])
            await s.process()
    finally:
        await publisher.stop()


def read_back(record: Any) -> dict[str, Any]:
    """A window-events record as the CloudEvents SDK reads it, checked against the bytes on
    the wire; returns the wire's event."""
    headers = dict(record.headers)
    assert headers["content-type"] == CONTENT_TYPE.encode()  # structured mode
    event = from_structured(KafkaMessage(headers, record.key, record.value), JSONFormat())
    wire: dict[str, Any] = orjson.loads(record.value)
    attributes = event.get_attributes()
    assert attributes.pop("partitionkey") == record.key.decode()  # the binding adds the key
    assert event.get_time() == datetime.fromisoformat(wire["time"])
    assert {k: v for k, v in attributes.items() if k != "time"} == {
        k: v for k, v in wire.items() if k not in ("time", "data")
    }
    assert event.get_data() == wire["data"]
    return wire


async def test_every_window_event_type_reads_through_the_sdk_and_fits_the_document(
    s: Scenario,
) -> None:
    await group_timeline(s)
    await user_timeline(s)
    await person_timeline(s)
    await s.sweep(s.now)
    await s.sweep(s.now + 80 * HOUR)

    assert s.settings.kafka_bootstrap
    records = await read_all(s.settings.kafka_bootstrap, s.topics.window_events)
    events = [read_back(r) for r in records]
    group_key = group_conversation_key(PN, GROUP)
    of_group = [e for e, r in zip(events, records, strict=True) if r.key.decode() == group_key]

    assert {e["type"] for e in events} == TYPES
    assert {e["type"] for e in of_group} == GROUP_TYPES
    fit(events)
    for event in events:
        assert isinstance(event["subject"], str), event
        assert event["subject"], event
    for event in of_group:
        assert event["subject"] == GROUP
        assert event["data"]["user"] == {"user_id": None, "wa_id": None}
    assert {e["subject"] for e in events if e["type"].startswith("wawindow.consent")} == {
        "US.13491208655302741918"
    }
