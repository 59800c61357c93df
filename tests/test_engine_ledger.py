"""The per-message pricing ledger, status order, opt-outs and Meta's corrections, rule by rule,
against real Kafka and Redis."""

from __future__ import annotations

import pytest

from tests.engine_harness import HOUR, Scenario
from wawindow.dev import samples

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MARKETING = samples.pmp_pricing("marketing", "regular")
SERVICE_FREE = samples.pmp_pricing("service", "free_customer_service")
DELIVERED_MARKETING = "messages_delivered|marketing|regular|true"


def delivered(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k.startswith("messages_delivered") and v}


async def test_pricing_on_sent_and_delivered_counts_one_message(s: Scenario) -> None:
    t = s.now - 600
    await s.status("wamid.o1", "sent", t, pricing=MARKETING)
    await s.status("wamid.o1", "delivered", t + 1, pricing=MARKETING)
    await s.status("wamid.o1", "read", t + 2)
    await s.process()

    assert delivered(await s.counts()) == {DELIVERED_MARKETING: 1}


async def test_pricing_only_on_sent_still_prices_the_delivery(s: Scenario) -> None:
    t = s.now - 600
    await s.status("wamid.o1", "sent", t, pricing=MARKETING)
    await s.status("wamid.o1", "delivered", t + 1)
    await s.process()

    assert delivered(await s.counts()) == {DELIVERED_MARKETING: 1}


async def test_pricing_only_on_read_with_delivered_skipped(s: Scenario) -> None:
    t = s.now - 600
    await s.status("wamid.o1", "sent", t)
    await s.status("wamid.o1", "read", t + 2, pricing=MARKETING)
    await s.process()

    assert delivered(await s.counts()) == {DELIVERED_MARKETING: 1}


async def test_a_late_sent_with_pricing_moves_the_count_from_unknown(s: Scenario) -> None:
    """read arrives first (no pricing): counted as unknown; the late sent carries pricing and
    the count moves, so the total stays one."""
    t = s.now - 600
    await s.status("wamid.o1", "read", t + 2)
    await s.process()
    assert delivered(await s.counts()) == {"messages_delivered|unknown|unknown|unknown": 1}

    await s.status("wamid.o1", "sent", t, pricing=MARKETING)
    await s.process()

    assert delivered(await s.counts()) == {DELIVERED_MARKETING: 1}


async def test_free_messages_are_counted_as_not_billable(s: Scenario) -> None:
    t = s.now - 600
    await s.status("wamid.o1", "delivered", t, pricing=SERVICE_FREE)
    await s.process()

    assert delivered(await s.counts()) == {
        "messages_delivered|service|free_customer_service|false": 1
    }


async def test_new_categories_are_counted_under_their_own_name(s: Scenario) -> None:
    t = s.now - 600
    await s.status(
        "wamid.o1", "delivered", t, pricing=samples.pmp_pricing("marketing_lite", "regular")
    )
    await s.process()

    assert delivered(await s.counts()) == {"messages_delivered|marketing_lite|regular|true": 1}


async def test_a_message_that_only_fails_is_not_counted(s: Scenario) -> None:
    t = s.now - 600
    await s.status("wamid.o1", "sent", t, pricing=MARKETING)
    await s.status("wamid.o1", "failed", t + 1, error_code=131049)
    await s.process()

    assert delivered(await s.counts()) == {}


async def test_repeated_statuses_count_once(s: Scenario) -> None:
    t = s.now - 600
    for _ in range(3):
        await s.status("wamid.o1", "delivered", t, pricing=MARKETING)
        await s.status("wamid.o1", "read", t + 5, pricing=MARKETING)
    await s.process()

    assert delivered(await s.counts()) == {DELIVERED_MARKETING: 1}


async def test_status_only_moves_forward(s: Scenario) -> None:
    t = s.now - 600
    await s.status("wamid.o1", "read", t + 2)
    await s.status("wamid.o1", "delivered", t + 1)
    await s.status("wamid.o1", "sent", t)
    await s.process()

    state = await s.store.conversation(f"{samples.PHONE_NUMBER_ID}:16505551234")
    m = state.messages["wamid.o1"]
    assert (m.rank, m.first, m.delivered) == (3, t, t + 1)


# -- opt-out ------------------------------------------------------------------------------


async def test_user_preferences_stop_and_resume(s: Scenario) -> None:
    await s.post(samples.preference("16505551234", "stop", s.now - 100))
    await s.post(samples.preference("16505551234", "resume", s.now - 50))
    await s.process()

    events = [e for e in await s.events() if e["type"] == "wawindow.opt_out.changed"]
    assert [e["data"]["marketing_opt_out"] for e in events] == [True, False]
    assert (await s.state())["marketing_opt_out"] == "0"


async def test_an_older_preference_never_overrides_a_newer_one(s: Scenario) -> None:
    await s.post(samples.preference("16505551234", "stop", s.now - 50))
    await s.post(samples.preference("16505551234", "resume", s.now - 100))
    await s.process()

    assert (await s.state())["marketing_opt_out"] == "1"


async def test_error_131050_records_a_marketing_opt_out(s: Scenario) -> None:
    await s.status("wamid.o1", "failed", s.now - 60, error_code=131050)
    await s.process()

    [event] = await s.events()
    assert event["type"] == "wawindow.opt_out.changed"
    assert event["data"] == {**event["data"], "marketing_opt_out": True, "reason": "meta_131050"}


async def test_a_stop_keyword_records_an_opt_out(s: Scenario) -> None:
    await s.inbound("wamid.i1", s.now - 60, text="STOP")
    await s.process()

    types = await s.event_types()
    assert "opt_out.changed" in types
    assert (await s.state())["opted_out"] == "1"


# -- Meta's correction ---------------------------------------------------------------------


async def test_error_131047_closes_a_window_the_tracker_thought_open(s: Scenario) -> None:
    await s.inbound("wamid.i1", s.now - 2 * HOUR)
    await s.status("wamid.o1", "failed", s.now - 60, error_code=131047)
    await s.process()

    events = await s.events()
    assert [e["type"].removeprefix("wawindow.") for e in events] == [
        "service_window.opened",
        "service_window.closed",
    ]
    assert events[1]["data"]["reason"] == "meta_131047"
    assert (await s.counts())["csw_corrections"] == 1
    assert await s.sweep(s.now + 25 * HOUR) == 0  # already closed: no second close
