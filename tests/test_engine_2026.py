"""The rules of late 2026 and the arrival orders that broke the engine before, each as a
timeline of webhook bodies through the real receiver, Kafka, worker and Redis."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine_harness import HOUR, KEY, PN, USER, Scenario
from wawindow.dev import samples
from wawindow.engine.views import window_view
from wawindow.rules.state import event_digest

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
DAY = 24 * HOUR
BSUID = "US.13491208655302741918"
UTILITY = {"pricing_model": "PMP", "type": "free_customer_service", "category": "utility"}
MARKETING = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"}


async def view(s: Scenario, user: str = USER, number: str = PN) -> dict[str, Any]:
    v = await window_view(s.store, number, user, s.now)
    assert v is not None
    return v


async def preference(s: Scenario, value: str, at: int, wa_id: str = USER) -> None:
    await s.post(
        {
            "field": "user_preferences",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PN},
                "contacts": [samples.contact(wa_id)],
                "user_preferences": [
                    {
                        "wa_id": wa_id,
                        "category": "marketing_messages",
                        "value": value,
                        "timestamp": str(at),
                    }
                ],
            },
        }
    )


async def test_a_user_initiated_call_opens_the_service_window(s: Scenario) -> None:
    at = s.now - HOUR
    await s.post(samples.calls_change(calls=[samples.call("wacid.1", "connect", at)]))
    await s.process()

    window = (await view(s))["service_window"]
    assert window["open"] is True
    assert await s.event_types() == ["service_window.opened"]
    assert (await s.counts())["inbound_calls"] == 1


async def test_a_business_initiated_call_opens_nothing(s: Scenario) -> None:
    call = samples.call("wacid.2", "connect", s.now - HOUR, direction="BUSINESS_INITIATED")
    await s.post(samples.calls_change(calls=[call]))
    await s.process()

    assert await s.events() == []


async def test_a_standby_message_counts_like_a_message(s: Scenario) -> None:
    message = samples.text_message("wamid.sb", s.now - HOUR, "hi agent")
    await s.post(samples.standby_change(messages=[message]))
    await s.process()

    assert (await view(s))["service_window"]["open"] is True
    assert (await s.counts())["inbound_messages"] == 1


async def test_a_group_message_opens_the_groups_window_not_the_participants(
    s: Scenario,
) -> None:
    at = s.now - HOUR
    message = samples.group_message("wamid.g1", at, "GRP1", wa_id=USER)
    await s.post(samples.messages_change(messages=[message]))
    for participant in ("16505550001", "16505550002"):
        status = samples.group_status("wamid.gout", "delivered", at + 60, "GRP1",
                                      participant_wa_id=participant, pricing=MARKETING)  # fmt: skip
        await s.post(samples.messages_change(statuses=[status]))
    await s.process()

    assert await window_view(s.store, PN, USER, s.now) is None  # no 1:1 window
    group = await view(s, "group.GRP1")
    assert group["service_window"]["open"] is True
    assert (await s.counts())["messages_delivered|marketing|regular|true"] == 2


async def test_a_number_change_keyed_by_bsuid_keeps_the_marketing_opt_out(s: Scenario) -> None:
    old_bsuid, new_bsuid, new_number = BSUID, "US.99999999999999999999", "12195555358"
    first = samples.text_message("wamid.1", s.now - 3 * HOUR, wa_id=USER, user_id=old_bsuid)
    await s.post(samples.messages_change(messages=[first],
                                         contacts=[samples.contact(USER, old_bsuid)]))  # fmt: skip
    await preference(s, "stop", s.now - 2 * HOUR)
    await s.process()
    change = samples.number_change(
        "wamid.sys", s.now - HOUR, USER, new_number, old_user_id=old_bsuid, new_user_id=new_bsuid
    )
    await s.post(samples.messages_change(messages=[change]))
    await s.process()

    for user in (new_number, new_bsuid, USER, old_bsuid):
        v = await view(s, user)
        assert v["marketing_opt_out"] is True, user
        assert v["service_window"]["open"] is True, user


async def test_a_changed_user_id_moves_the_state_to_the_new_bsuid(s: Scenario) -> None:
    new_bsuid = "US.11111111111111111111"
    first = samples.text_message("wamid.1", s.now - 3 * HOUR, wa_id=None, user_id=BSUID)
    await s.post(samples.messages_change(messages=[first]))
    await s.process()
    change = samples.user_id_change("wamid.sys", s.now - HOUR, BSUID, new_bsuid)
    await s.post(samples.messages_change(messages=[change]))
    await s.process()

    assert (await view(s, new_bsuid))["service_window"]["open"] is True
    assert (await s.state(f"{PN}:{BSUID}")) == {}


async def test_a_late_131047_older_than_the_users_last_message_leaves_the_window_open(
    s: Scenario,
) -> None:
    await s.inbound("wamid.1", s.now - 20 * HOUR)
    await s.inbound("wamid.2", s.now - HOUR)  # the user wrote again
    await s.process()
    await s.status("wamid.out", "failed", s.now - 2 * HOUR, error_code=131047)  # arrives late
    await s.process()

    v = await view(s)
    assert v["service_window"]["open"] is True
    assert "service_window.closed" in await s.event_types()  # the earlier window, at the failure
    assert (await s.counts())["csw_corrections"] == 1


async def test_a_late_older_resume_never_beats_a_newer_stop(s: Scenario) -> None:
    await preference(s, "stop", s.now - 3 * HOUR)
    await preference(s, "stop", s.now - HOUR)
    await s.process()
    await preference(s, "resume", s.now - 2 * HOUR)  # older than the last stop, arrives last
    await s.process()

    assert (await view(s))["marketing_opt_out"] is True


async def test_the_free_entry_point_never_opens_at_a_status_of_a_message_sent_before_the_ad(
    s: Scenario,
) -> None:
    referral_at = s.now - 2 * HOUR
    await s.status("wamid.before", "sent", referral_at - 60)
    message = samples.text_message("wamid.ad", referral_at, referral=samples.ad_referral())
    await s.post(samples.messages_change(messages=[message]))
    await s.status("wamid.before", "read", referral_at + 60)  # read after the ad: not a reply
    await s.process()

    assert (await view(s))["entry_point_window"] is None
    await s.status("wamid.reply", "sent", referral_at + 120)
    await s.process()
    entry_point = (await view(s))["entry_point_window"]
    assert entry_point is not None
    assert entry_point["open"] is True


async def test_a_late_older_message_that_started_an_earlier_window_is_its_own_window(
    s: Scenario,
) -> None:
    await s.inbound("wamid.new", s.now - HOUR)
    await s.process()
    await s.inbound("wamid.old", s.now - 30 * HOUR)  # a window that closed before the new one
    await s.process()

    events = await s.events()
    assert [e["type"].removeprefix("wawindow.") for e in events] == [
        "service_window.opened",
        "service_window.opened",
        "service_window.closed",
    ]
    assert events[1]["data"]["late"] is True
    assert events[2]["data"]["late"] is True
    assert (await s.counts())["service_windows_opened"] == 2


async def test_the_window_open_at_a_statuss_own_time_judges_it(s: Scenario) -> None:
    """A delivery inside the earlier window is user-initiated though that window is over."""
    await s.inbound("wamid.old", s.now - 40 * HOUR)
    await s.inbound("wamid.new", s.now - HOUR)
    await s.status("wamid.out", "delivered", s.now - 39 * HOUR)
    await s.process()

    counts = await s.counts()
    assert counts["conversations_opened|service|user|regular|derived"] == 1


async def test_a_service_guess_gives_way_to_the_category_learned_late(s: Scenario) -> None:
    await s.inbound("wamid.in", s.now - 2 * HOUR)
    await s.status("wamid.out", "read", s.now - HOUR)  # no pricing: guessed service
    await s.process()
    await s.status("wamid.out", "sent", s.now - HOUR - 60, pricing=UTILITY)
    await s.process()

    counts = await s.counts()
    assert counts["conversations_opened|utility|user|regular|derived"] == 1
    assert counts["conversations_opened|service|user|regular|derived"] == 0
    assert "conversation.updated" in await s.event_types()


async def test_the_initiator_does_not_depend_on_the_order_the_webhooks_came_in(
    s: Scenario,
) -> None:
    await s.status("wamid.out", "delivered", s.now - HOUR, pricing=MARKETING)
    await s.process()  # no window known yet: business-initiated
    await s.inbound("wamid.in", s.now - 2 * HOUR)  # the user had written first
    await s.process()

    counts = await s.counts()
    assert counts["conversations_opened|marketing|user|regular|derived"] == 1
    assert counts["conversations_opened|marketing|business|regular|derived"] == 0


async def test_a_read_nine_days_after_delivery_is_never_billed_again(s: Scenario) -> None:
    """Past the 8 days of history the delivery is remembered as billed only."""
    delivered = s.now - 9 * DAY - HOUR
    await s.status("wamid.out", "delivered", delivered, pricing=MARKETING)
    await s.process()
    await s.status("wamid.out", "read", delivered + 9 * DAY, pricing=MARKETING)
    await s.process()

    assert (await s.counts())["messages_delivered|marketing|regular|true"] == 1
    state = await s.store.conversation(KEY)
    assert event_digest("wamid.out") in state.billed  # remembered past the history
    assert "wamid.out" not in state.messages
