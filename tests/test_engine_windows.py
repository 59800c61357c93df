"""The customer service window, rule by rule, against real Kafka and Redis."""

from __future__ import annotations

import pytest

from tests.engine_harness import HOUR, KEY, Scenario
from wawindow.dev import samples

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


async def test_an_inbound_message_opens_the_window_for_24_hours(s: Scenario) -> None:
    t = s.now - 60

    await s.inbound("wamid.1", t)
    await s.process()

    [event] = await s.events()
    assert event["type"] == "wawindow.service_window.opened"
    assert event["source"] == f"wawindow/{samples.PHONE_NUMBER_ID}"
    assert event["subject"] == "16505551234"
    assert event["data"]["user"] == {"user_id": None, "wa_id": "16505551234"}
    state = await s.state()
    assert (int(state["csw_opened"]), int(state["csw_expires"])) == (t, t + 24 * HOUR)
    counts = await s.counts()
    assert (counts["inbound_messages"], counts["service_windows_opened"]) == (1, 1)


async def test_a_later_message_extends_the_window(s: Scenario) -> None:
    await s.inbound("wamid.1", s.now - 600)
    await s.inbound("wamid.2", s.now - 60)
    await s.process()

    assert await s.event_types() == ["service_window.opened", "service_window.extended"]
    assert int((await s.state())["csw_expires"]) == s.now - 60 + 24 * HOUR
    counts = await s.counts()
    assert (counts["inbound_messages"], counts["service_windows_opened"]) == (2, 1)


async def test_a_late_older_message_never_shortens_the_window(s: Scenario) -> None:
    await s.inbound("wamid.new", s.now - 60)
    await s.inbound("wamid.old", s.now - 3 * HOUR)
    await s.process()

    assert await s.event_types() == ["service_window.opened"]
    assert int((await s.state())["csw_expires"]) == s.now - 60 + 24 * HOUR
    assert (await s.counts())["inbound_messages"] == 2


async def test_a_repeated_webhook_changes_nothing(s: Scenario) -> None:
    """Meta re-sends the same body: one window, one count."""
    for _ in range(3):
        await s.inbound("wamid.dup", s.now - 60)
    await s.process()

    assert await s.event_types() == ["service_window.opened"]
    counts = await s.counts()
    assert (counts["inbound_messages"], counts["service_windows_opened"]) == (1, 1)


async def test_an_expired_window_closes_with_its_true_closed_at(s: Scenario) -> None:
    t = s.now - 22 * HOUR  # two hours left: no warning is due yet
    await s.inbound("wamid.1", t)
    await s.process()

    published = await s.sweep(t + 24 * HOUR)  # past the end: no warning, the close
    again = await s.sweep(t + 24 * HOUR + 1)

    events = await s.events()
    assert [e["type"] for e in events] == [
        "wawindow.service_window.opened",
        "wawindow.service_window.closed",
    ]
    closed = events[1]
    assert closed["data"]["closed_at"] == closed["data"]["expires_at"]
    assert closed["time"] == closed["data"]["expires_at"]
    assert (published, again) == (1, 0)
    assert (await s.state())["csw_closed"] == "1"


async def test_a_window_learned_after_its_end_is_closed_at_once_and_marked_late(
    s: Scenario,
) -> None:
    t = s.now - 25 * HOUR
    await s.inbound("wamid.1", t)
    await s.process()

    assert await s.sweep() == 0
    opened, closed = await s.events()
    assert (opened["type"], closed["type"]) == (
        "wawindow.service_window.opened",
        "wawindow.service_window.closed",
    )
    assert opened["data"]["late"] is True
    assert closed["data"]["late"] is True


async def test_closing_soon_comes_before_the_close(s: Scenario) -> None:
    t = s.now - 23 * HOUR - 30 * 60  # 30 minutes left; the default warning is 1 hour ahead
    await s.inbound("wamid.1", t)
    await s.process()

    await s.sweep()
    await s.sweep()

    events = await s.events()
    assert [e["type"] for e in events] == [
        "wawindow.service_window.opened",
        "wawindow.service_window.closing_soon",
    ]
    assert events[1]["data"]["offset"] == 3600


async def test_a_window_extended_in_time_is_never_closed(s: Scenario) -> None:
    first = s.now - 23 * HOUR - 50 * 60  # ends in 10 minutes
    await s.inbound("wamid.1", first)
    await s.process()
    await s.inbound("wamid.2", s.now - 60)
    await s.process()

    await s.sweep(first + 24 * HOUR + 1)  # past the old end, before the new one

    assert "service_window.closed" not in await s.event_types()


async def test_a_message_after_expiry_closes_the_old_window_and_opens_a_new_one(
    s: Scenario,
) -> None:
    old = s.now - 30 * HOUR
    await s.inbound("wamid.old", old)
    await s.inbound("wamid.new", s.now - 60)
    await s.process()

    events = await s.events()
    assert [e["type"].removeprefix("wawindow.") for e in events] == [
        "service_window.opened",
        "service_window.closed",
        "service_window.opened",
    ]
    assert events[1]["data"]["closed_at"] == events[0]["data"]["expires_at"]
    assert len({e["id"] for e in events}) == 3
    assert (await s.counts())["service_windows_opened"] == 2


async def test_system_messages_do_not_open_a_window(s: Scenario) -> None:
    message = samples.number_change("wamid.sys", s.now - 60, "16505551234", "12195555358")
    await s.post(samples.messages_change(messages=[message]))
    await s.process()

    assert await s.events() == []
    assert (await s.counts())["service_windows_opened"] == 0


async def test_a_second_consumer_group_replaying_the_topic_changes_nothing(s: Scenario) -> None:
    """A whole-topic replay (a new group from the earliest offset) adds no counts and no
    events: every event id is remembered."""
    await s.inbound("wamid.1", s.now - 600)
    await s.inbound("wamid.2", s.now - 60)
    await s.process()
    before_events, before_counts = await s.events(), await s.counts()

    replay = await s.worker(group="replay")
    await replay.drain()

    assert await s.events() == before_events
    assert await s.counts() == before_counts


async def test_the_window_event_key_is_the_conversation_key(s: Scenario) -> None:
    await s.inbound("wamid.1", s.now - 60)
    await s.process()

    from tests.kafkautil import read_all

    assert s.settings.kafka_bootstrap
    [record] = await read_all(s.settings.kafka_bootstrap, s.topics.window_events)
    assert record.key.decode() == KEY
