"""One user, whatever ids Meta names them by: BSUID and wa_id, and a number change."""

from __future__ import annotations

import pytest

from tests.engine_harness import Scenario
from wawindow.dev import samples

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PN = samples.PHONE_NUMBER_ID
WA = "16505551234"
BSUID = "US.13491208655302741918"


async def message(
    s: Scenario, wamid: str, at: int, *, wa: str | None = WA, bsuid: str | None = None
) -> None:
    msg = samples.text_message(wamid, at, wa_id=wa, user_id=bsuid)
    await s.post(samples.messages_change(messages=[msg]))


async def test_a_user_first_seen_by_wa_id_then_by_both_is_one_user(s: Scenario) -> None:
    await message(s, "wamid.1", s.now - 600)
    await s.process()
    await message(s, "wamid.2", s.now - 60, bsuid=BSUID)
    await s.process()

    assert await s.event_types() == ["service_window.opened", "service_window.extended"]
    assert (await s.counts())["service_windows_opened"] == 1
    merged = await s.state(f"{PN}:{BSUID}")
    assert (merged["user_id"], merged["wa_id"]) == (BSUID, WA)
    assert await s.state(f"{PN}:{WA}") == {}


async def test_after_the_link_a_wa_id_only_event_reaches_the_bsuid_state(s: Scenario) -> None:
    await message(s, "wamid.1", s.now - 900, wa=None, bsuid=BSUID)
    await message(s, "wamid.2", s.now - 600, bsuid=BSUID)
    await message(s, "wamid.3", s.now - 60)  # wa_id only
    await s.process()

    assert await s.event_types() == [
        "service_window.opened",
        "service_window.extended",
        "service_window.extended",
    ]
    assert int((await s.state(f"{PN}:{BSUID}"))["csw_expires"]) == s.now - 60 + 24 * 3600
    assert await s.state(f"{PN}:{WA}") == {}


async def test_a_resend_of_an_event_applied_before_the_link_is_still_a_repeat(s: Scenario) -> None:
    await message(s, "wamid.1", s.now - 600)
    await s.process()
    await message(s, "wamid.2", s.now - 300, bsuid=BSUID)
    await s.process()
    await message(s, "wamid.1", s.now - 600)  # Meta re-sends the first, wa_id only
    await s.process()

    assert (await s.counts())["inbound_messages"] == 2


async def test_a_number_change_moves_the_window_to_the_new_number(s: Scenario) -> None:
    await message(s, "wamid.1", s.now - 600)
    system = samples.number_change("wamid.sys", s.now - 300, WA, "12195555358")
    await s.post(samples.messages_change(messages=[system]))
    await s.process()
    await message(s, "wamid.2", s.now - 60, wa="12195555358")
    await s.process()

    assert await s.event_types() == ["service_window.opened", "service_window.extended"]
    assert (await s.state(f"{PN}:12195555358"))["csw_opened"] == str(s.now - 600)
    assert await s.state(f"{PN}:{WA}") == {}


async def test_a_link_carries_open_conversations_and_their_deadlines(s: Scenario) -> None:
    """A conversation opened under the wa_id key still closes on time after the user's ids
    are linked (the merged state is scheduled as a whole)."""
    t = s.now - 23 * 3600
    await s.status("wamid.o1", "delivered", t, pricing=samples.pmp_pricing("marketing", "regular"))
    await s.process()
    await message(s, "wamid.in", s.now - 60, bsuid=BSUID)
    await s.process()

    await s.sweep(t + 24 * 3600 + 1)

    closed = [e for e in await s.events() if e["type"] == "wawindow.conversation.closed"]
    assert [e["data"]["category"] for e in closed] == ["marketing"]
    assert all(not f.startswith("cv:") for f in await s.state(f"{PN}:{BSUID}"))


async def test_many_users_linked_in_one_batch_each_keep_their_window(s: Scenario) -> None:
    users = [(f"1650555{i:04d}", f"US.{i:020d}") for i in range(20)]
    for i, (wa, _) in enumerate(users):
        await message(s, f"wamid.a{i}", s.now - 600, wa=wa)
    await s.process()
    for i, (wa, bsuid) in enumerate(users):
        await message(s, f"wamid.b{i}", s.now - 60, wa=wa, bsuid=bsuid)
    await s.process()

    for wa, bsuid in users:
        merged = await s.state(f"{PN}:{bsuid}")
        assert (merged["wa_id"], merged["csw_opened"]) == (wa, str(s.now - 600))
        assert await s.state(f"{PN}:{wa}") == {}
    assert (await s.counts())["service_windows_opened"] == 20


async def test_a_chain_of_links_in_one_batch_ends_on_the_last_key(s: Scenario) -> None:
    """Old number → new number → BSUID, both links in one call: the old number's window
    reaches the BSUID's state, and neither intermediate key keeps anything."""
    new = "12195555358"
    await message(s, "wamid.1", s.now - 600)
    await s.process()

    await s.store.link_many(
        [(f"{PN}:{WA}", f"{PN}:{new}"), (f"{PN}:{new}", f"{PN}:{BSUID}")], s.now
    )

    assert (await s.state(f"{PN}:{BSUID}"))["csw_opened"] == str(s.now - 600)
    assert await s.state(f"{PN}:{WA}") == {}
    assert await s.state(f"{PN}:{new}") == {}
    resolved = await s.store.resolve([f"{PN}:{WA}", f"{PN}:{new}"])
    assert set(resolved.values()) == {f"{PN}:{BSUID}"}
