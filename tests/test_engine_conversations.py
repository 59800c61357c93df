"""Derived conversations (user- or business-initiated, by category) and the free entry point
window, rule by rule, against real Kafka and Redis."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine_harness import HOUR, Scenario
from wawindow.dev import samples

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

MARKETING = samples.pmp_pricing("marketing", "regular")
UTILITY = samples.pmp_pricing("utility", "regular")
SERVICE = samples.pmp_pricing("service", "free_customer_service")
FEP = samples.pmp_pricing("referral_conversion", "free_entry_point")


async def of_type(s: Scenario, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in await s.events() if e["type"] == f"wawindow.{kind}"]


def opened(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k.startswith("conversations_opened") and v}


async def test_a_reply_in_the_window_opens_a_user_initiated_service_conversation(
    s: Scenario,
) -> None:
    await s.inbound("wamid.in", s.now - 600)
    await s.status("wamid.out", "delivered", s.now - 540, pricing=SERVICE)
    await s.process()

    [conversation] = await of_type(s, "conversation.opened")
    assert (
        conversation["category"],
        conversation["initiator"],
        conversation["type"],
        conversation["source"],
    ) == (
        "service",
        "user",
        "regular",
        "derived",
    )
    assert opened(await s.counts()) == {"conversations_opened|service|user|regular|derived": 1}


async def test_a_template_to_a_closed_window_opens_a_business_initiated_conversation(
    s: Scenario,
) -> None:
    await s.status("wamid.out", "delivered", s.now - 600, pricing=MARKETING)
    await s.process()

    assert opened(await s.counts()) == {
        "conversations_opened|marketing|business|regular|derived": 1
    }


async def test_templates_of_one_category_share_a_conversation_others_open_their_own(
    s: Scenario,
) -> None:
    await s.status("wamid.m1", "delivered", s.now - 4 * HOUR, pricing=MARKETING)
    await s.status("wamid.u1", "delivered", s.now - 3 * HOUR, pricing=UTILITY)
    await s.status("wamid.m2", "delivered", s.now - 2 * HOUR, pricing=MARKETING)
    await s.status("wamid.u2", "delivered", s.now - 1 * HOUR, pricing=UTILITY)
    await s.process()

    assert opened(await s.counts()) == {
        "conversations_opened|marketing|business|regular|derived": 1,
        "conversations_opened|utility|business|regular|derived": 1,
    }


async def test_a_service_message_is_absorbed_by_any_open_conversation(s: Scenario) -> None:
    await s.status("wamid.m1", "delivered", s.now - 4 * HOUR, pricing=MARKETING)
    await s.inbound("wamid.in", s.now - 3 * HOUR)
    await s.status("wamid.s1", "delivered", s.now - 2 * HOUR, pricing=SERVICE)
    await s.process()

    assert opened(await s.counts()) == {
        "conversations_opened|marketing|business|regular|derived": 1
    }


async def test_a_category_learned_after_the_opening_moves_the_count(s: Scenario) -> None:
    t = s.now - 600
    await s.status("wamid.o1", "read", t + 2)  # no pricing, no window: unknown
    await s.process()
    assert opened(await s.counts()) == {"conversations_opened|unknown|business|regular|derived": 1}

    await s.status("wamid.o1", "sent", t, pricing=MARKETING)
    await s.process()

    assert opened(await s.counts()) == {
        "conversations_opened|marketing|business|regular|derived": 1
    }


async def test_a_message_that_only_fails_opens_no_conversation(s: Scenario) -> None:
    await s.status("wamid.o1", "sent", s.now - 600, pricing=MARKETING)
    await s.status("wamid.o1", "failed", s.now - 590, error_code=131049)
    await s.process()

    assert opened(await s.counts()) == {}


async def test_a_conversation_closes_24_hours_after_it_opened(s: Scenario) -> None:
    t = s.now - 25 * HOUR
    await s.status("wamid.o1", "delivered", t, pricing=MARKETING)
    await s.process()

    await s.sweep()

    [closed] = await of_type(s, "conversation.closed")
    assert (closed["category"], closed["closed_at"]) == ("marketing", closed["expires_at"])
    assert closed["expires_at"].endswith("Z")


async def test_the_cbp_era_conversation_object_wins(s: Scenario) -> None:
    """A CBP-era body with a conversation object: Meta's id, category and end are used."""
    t = s.now - 600
    conversation = {
        "id": "cbp-conv-1",
        "expiration_timestamp": str(t + 20 * HOUR),
        "origin": {"type": "utility"},
    }
    pricing = {"billable": True, "pricing_model": "CBP", "category": "utility"}
    await s.status("wamid.o1", "sent", t, pricing=pricing, conversation=conversation)
    await s.status(
        "wamid.o1", "delivered", t + 5, pricing=pricing, conversation={"id": "cbp-conv-1"}
    )
    await s.process()

    [c] = await of_type(s, "conversation.opened")
    assert (c["source"], c["conversation_id"], c["category"]) == ("meta", "cbp-conv-1", "utility")
    assert c["expires_at"] == _iso(t + 20 * HOUR)


# -- the free entry point window ----------------------------------------------------------


async def ad_message(s: Scenario, at: int) -> None:
    message = samples.text_message("wamid.ad", at, referral=samples.ad_referral())
    await s.post(samples.messages_change(messages=[message]))


async def test_a_reply_within_24_hours_of_an_ad_message_opens_the_free_entry_point(
    s: Scenario,
) -> None:
    t = s.now - 10 * HOUR
    await ad_message(s, t)
    await s.status("wamid.reply", "sent", t + HOUR, pricing=FEP)
    await s.status("wamid.reply", "delivered", t + HOUR + 5, pricing=FEP)
    await s.status("wamid.tpl", "delivered", t + 2 * HOUR, pricing=FEP)
    await s.process()

    [window] = await of_type(s, "entry_point_window.opened")
    assert (window["opened_at"], window["expires_at"]) == (
        _iso(t + HOUR),
        _iso(t + HOUR + 72 * HOUR),
    )
    counts = await s.counts()
    assert counts["entry_point_windows_opened"] == 1
    assert opened(counts) == {
        "conversations_opened|referral_conversion|user|free_entry_point|derived": 1
    }


async def test_a_reply_after_24_hours_opens_no_free_entry_point(s: Scenario) -> None:
    t = s.now - 30 * HOUR
    await ad_message(s, t)
    await s.status("wamid.reply", "delivered", t + 25 * HOUR, pricing=MARKETING)
    await s.process()

    assert await of_type(s, "entry_point_window.opened") == []
    assert opened(await s.counts()) == {
        "conversations_opened|marketing|business|regular|derived": 1
    }


async def test_a_free_entry_point_closes_the_other_conversations(s: Scenario) -> None:
    t = s.now - 10 * HOUR
    await s.status("wamid.m1", "delivered", t - HOUR, pricing=MARKETING)
    await ad_message(s, t)
    await s.status("wamid.reply", "delivered", t + 60, pricing=FEP)
    await s.process()

    [closed] = await of_type(s, "conversation.closed")
    assert (closed["category"], closed["closed_at"]) == ("marketing", _iso(t + 60))


async def test_metas_expiration_is_the_free_entry_points_end(s: Scenario) -> None:
    t = s.now - 10 * HOUR
    conversation = {
        "id": "fep-1",
        "expiration_timestamp": str(t + 50 * HOUR),
        "origin": {"type": "referral_conversion"},
    }
    await s.status("wamid.reply", "sent", t, pricing=FEP, conversation=conversation)
    await s.process()

    [window] = await of_type(s, "entry_point_window.opened")
    assert (window["expires_at"], window["source"]) == (_iso(t + 50 * HOUR), "meta")


async def test_the_free_entry_point_window_closes_at_its_end(s: Scenario) -> None:
    t = s.now - 80 * HOUR
    await ad_message(s, t)
    await s.status("wamid.reply", "delivered", t + 60, pricing=FEP)
    await s.process()

    await s.sweep()

    [closed] = await of_type(s, "entry_point_window.closed")
    assert closed["closed_at"] == _iso(t + 60 + 72 * HOUR)
    assert [c["category"] for c in await of_type(s, "conversation.closed")] == [
        "referral_conversion"
    ]


def _iso(ts: int) -> str:
    from wawindow.engine.cloudevents import iso

    return iso(ts)
