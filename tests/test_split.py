"""Splitting bodies into events: pure rules, no Kafka."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import PAYLOADS
from wawindow.config import DEFAULT_OPT_OUT_KEYWORDS
from wawindow.dev import samples
from wawindow.ingest.split import SplitOptions, UserRef, WebhookEvent, normalize_keyword, split_body

OPTIONS = SplitOptions(
    opt_out_keywords=frozenset(normalize_keyword(k) for k in DEFAULT_OPT_OUT_KEYWORDS)
)
PN = "106540352242922"
WABA = "102290129340398"
# the example group id of Meta's group messages webhook reference
GROUP = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
GROUP_KEY = f"{PN}:group.{GROUP}"

# file -> [(kind, key)] of the events it must become, in order
EXPECTED = {
    "account_update_volume_based_pricing_tier_update.json": [("change", WABA)],
    "group_inbound_text.json": [("message", GROUP_KEY)],
    "group_status_delivered_participant.json": [("status", GROUP_KEY)],
    "group_status_failed.json": [("status", GROUP_KEY)],
    "group_status_sent.json": [("status", GROUP_KEY)],
    "inbound_button_quick_reply.json": [("message", f"{PN}:16505551234")],
    "inbound_image.json": [("message", f"{PN}:16505551234")],
    "inbound_interactive_button_reply.json": [("message", f"{PN}:16505551234")],
    "inbound_interactive_list_reply.json": [("message", f"{PN}:16505551234")],
    "inbound_interactive_with_value_level_errors_pywa.json": [
        ("message", "1122334455667:US.13491208655302741918"),
        ("error", "1234567890987654321"),
    ],
    "inbound_location.json": [("message", f"{PN}:16505551234")],
    "inbound_reaction.json": [("message", f"{PN}:16505551234")],
    "inbound_reaction_removed.json": [("message", f"{PN}:16505551234")],
    "inbound_system_user_changed_number.json": [("message", f"{PN}:16505551234")],
    "inbound_text.json": [("message", f"{PN}:16505551234")],
    "inbound_text_bsuid_username_no_phone.json": [("message", f"{PN}:US.13491208655302741918")],
    "inbound_text_ctwa_ad_referral.json": [("message", f"{PN}:16505551234")],
    "inbound_text_product_inquiry_context.json": [("message", f"{PN}:16505551234")],
    "inbound_unsupported_edit.json": [("message", f"{PN}:16505551234")],
    "message_template_status_update_approved.json": [("change", WABA)],
    "status_delivered_cbp_service.json": [("status", f"{PN}:16505551234")],
    "status_delivered_pmp_marketing_bsuid_no_phone.json": [
        ("status", f"{PN}:US.13491208655302741918")
    ],
    "status_delivered_pmp_marketing_bsuid_username.json": [
        ("status", f"{PN}:US.13491208655302741918")
    ],
    "status_failed_130472_pywa.json": [("status", "1122334455667:US.13491208655302741918")],
    "status_failed_131049.json": [("status", f"{PN}:16505551234")],
    "status_sent_cbp_service_with_expiration_pywa.json": [
        ("status", "1122334455667:US.13491208655302741918")
    ],
    "status_sent_pmp_marketing_regular.json": [("status", f"{PN}:16505551234")],
    "status_v24_no_conversation_no_pricing.json": [("status", f"{PN}:16505551234")],
    "user_preferences_resume_marketing.json": [("user_preference", f"{PN}:16505551234")],
    "value_errors_rate_limit_130429.json": [("error", WABA)],
}


def _payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def test_every_sample_body_is_covered() -> None:
    """Each sample body in the fixtures has an expectation here (none silently untested)."""
    on_disk = {p.name for p in PAYLOADS.glob("*.json")}

    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_body_splits_into_expected_events(name: str) -> None:
    """Every sample body becomes the right events with the right conversation keys."""
    split = split_body(_payload(name), 1_000, OPTIONS)

    assert split.reason is None
    assert [(e.kind, e.key) for e in split.events] == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_message_content_leaves_the_receiver(name: str) -> None:
    """Text, captions, media links, locations and ad copy never reach an event by default."""
    raw = _payload(name)
    encoded = b"".join(e.encode() for e in split_body(raw, 1_000, OPTIONS).events)

    for secret in (
        b"Does it come in another color?",
        b"Taj Mahal",
        b"lookaside.fbsbx.com",
        b"Philz Coffee",
        b"37.44221496582",
        b"Summer Succulents",
        b"Can I get more info",
        b"changed from",
        b"Sheena Nelson",
        b"What do you all think",
        b"Message could not be delivered",
    ):
        assert secret not in encoded


def test_bsuid_is_preferred_and_contacts_link_both_ids() -> None:
    """A user known by BSUID and wa_id is keyed by the BSUID and carries both ids."""
    raw = samples.encode(
        samples.body(
            samples.messages_change(
                contacts=[samples.contact("16505551234", "US.1349")],
                messages=[samples.text_message("wamid.A", 1_750_000_000, wa_id="16505551234")],
            )
        )
    )

    [event] = split_body(raw, 1, OPTIONS).events

    assert event.key == f"{PN}:US.1349"
    assert (event.user.user_id, event.user.wa_id) == ("US.1349", "16505551234")  # type: ignore[union-attr]


def test_event_ids_are_deterministic_per_thing() -> None:
    """The same message, or the same status of a message, always gets the same event id;
    different statuses of one message get different ids."""

    def ids(state: str) -> list[str]:
        raw = samples.encode(
            samples.body(samples.messages_change(statuses=[samples.status("wamid.X", state, 5)]))
        )
        return [e.event_id for e in split_body(raw, 1, OPTIONS).events]

    assert ids("sent") == ids("sent")
    assert ids("sent") != ids("delivered")


def test_a_batch_of_many_entries_and_changes_loses_nothing() -> None:
    """Every entry x change x item becomes an event (the batched-webhook bug of other tools)."""
    entries = []
    for e in range(3):
        changes = [
            samples.messages_change(
                messages=[samples.text_message(f"wamid.in.{e}.{c}.{i}", 100 + i) for i in range(4)],
                statuses=[
                    samples.status(f"wamid.out.{e}.{c}.{i}", "read", 100 + i) for i in range(5)
                ],
            )
            for c in range(4)
        ]
        changes.append(samples.preference("16505551234", "stop", 200 + e))
        entries.append({"id": f"waba{e}", "changes": changes})
    raw = orjson.dumps({"object": "whatsapp_business_account", "entry": entries})

    split = split_body(raw, 1, OPTIONS)

    assert split.reason is None
    assert len(split.events) == 3 * (4 * (4 + 5) + 1)
    assert len({e.event_id for e in split.events}) == len(split.events)
    assert {e.waba_id for e in split.events} == {"waba0", "waba1", "waba2"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json at all", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"object": "page", "entry": []}', "object is 'page'"),
        (b'{"object": "whatsapp_business_account"}', "no entry list"),
        (
            b'{"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": []}]}',
            "no events",
        ),
    ],
)
def test_unreadable_bodies_are_rejected_whole_with_a_reason(raw: bytes, reason: str) -> None:
    split = split_body(raw, 1, OPTIONS)

    assert split.events == []
    assert split.rejected is not None
    assert reason in split.rejected


def test_a_bad_item_is_reported_and_the_good_ones_still_split() -> None:
    """One status without an id does not cost the other items of the batch."""
    raw = samples.encode(
        samples.body(
            samples.messages_change(
                statuses=[
                    samples.status("wamid.good1", "sent", 10),
                    {"status": "delivered", "timestamp": "11", "recipient_id": "1650"},
                    samples.status("wamid.good2", "read", 12),
                ]
            )
        )
    )

    split = split_body(raw, 1, OPTIONS)

    assert [e.data["wamid"] for e in split.events] == ["wamid.good1", "wamid.good2"]
    assert split.problems == ["entry[0].changes[0].value.statuses[1]: no id"]


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("STOP", "STOP"),
        ("stop!", "STOP"),
        ("  Unsubscribe. ", "UNSUBSCRIBE"),
        ("退订", "退订"),
        ("opt-out", "OPT OUT"),
    ],
)
def test_opt_out_keywords_are_recognised(text: str, keyword: str) -> None:
    raw = samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message("wamid.k", 1, text)]))
    )

    [event] = split_body(raw, 1, OPTIONS).events

    assert event.data["opt_out_keyword"] == keyword


@pytest.mark.parametrize("text", ["please don't stop sending", "stopped by the shop", "hello"])
def test_ordinary_text_is_not_an_opt_out(text: str) -> None:
    raw = samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message("wamid.k", 1, text)]))
    )

    [event] = split_body(raw, 1, OPTIONS).events

    assert "opt_out_keyword" not in event.data


def test_content_is_kept_only_when_asked() -> None:
    raw = samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message("wamid.c", 1, "hi")]))
    )

    [kept] = split_body(raw, 1, SplitOptions(keep_content=True)).events
    [dropped] = split_body(raw, 1, SplitOptions()).events

    assert kept.data["content"] == {"body": "hi"}
    assert "content" not in dropped.data


def test_referral_keeps_ids_not_ad_copy() -> None:
    """A Click-to-WhatsApp referral keeps what the window engine needs, not the ad's text."""
    message = samples.text_message("wamid.r", 1, referral=samples.ad_referral())
    raw = samples.encode(samples.body(samples.messages_change(messages=[message])))

    [event] = split_body(raw, 1, OPTIONS).events

    assert set(event.data["referral"]) == {"source_type", "source_id", "ctwa_clid"}


def test_timestamps_are_metas_as_integers() -> None:
    raw = samples.encode(
        samples.body(
            samples.messages_change(messages=[samples.text_message("wamid.t", 1_750_000_123)])
        )
    )

    [event] = split_body(raw, 99, OPTIONS).events

    assert (event.timestamp, event.received_at_ms) == (1_750_000_123, 99)


def test_event_encoding_round_trips() -> None:
    raw = samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message("wamid.e", 7)]))
    )
    [event] = split_body(raw, 1, OPTIONS).events

    decoded = orjson.loads(event.encode())

    assert decoded["event_id"] == event.event_id
    assert decoded["user"] == {"user_id": None, "wa_id": "16505551234"}
    assert decoded["schema"] == 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_event_encodes_every_field_of_the_record(name: str) -> None:
    """The encoder writes the fields out by hand (it is cheaper): it must still give every
    field, in order, exactly as the dataclass would serialize."""
    for event in split_body(_payload(name), 1_000, OPTIONS).events:
        assert event.encode() == orjson.dumps(event)


# -- the 2026 shapes: calls, standby, groups, identity changes ---------------------------------

BSUID = "US.13491208655302741918"
# what the sample builders put in content: none of it may reach an event
SECRETS = (
    b"Does it come in another color?",
    b"What does everyone think",
    b"Yes, in blue and green",
    b"Sheena Nelson",
    b"changed from",
    b"4611731400430051336",
    b"sdp",
    b"tracker-42",
)


def _events(*changes: dict[str, Any]) -> list[WebhookEvent]:
    split = split_body(samples.encode(samples.body(*changes)), 1, OPTIONS)
    assert split.reason is None
    return split.events


def test_a_user_initiated_call_keeps_only_who_which_way_and_when() -> None:
    """A call becomes a ``call`` event of the caller's conversation with the call's metadata
    only: no SDP session, no tracker string."""
    item = samples.call("wacid.ABC", "connect", 1_750_000_000, user_id=BSUID)
    [event] = _events(samples.calls_change(calls=[item]))

    assert event.kind == "call"
    assert event.field == "calls"
    assert event.event_id == f"call:{PN}:wacid.ABC:connect"
    assert event.key == f"{PN}:{BSUID}"
    assert (event.user.wa_id, event.user.user_id) == ("16505551234", BSUID)  # type: ignore[union-attr]
    assert event.timestamp == 1_750_000_000
    assert event.data == {"call_id": "wacid.ABC", "event": "connect", "direction": "USER_INITIATED"}


def test_a_business_initiated_call_belongs_to_the_callee_not_the_business() -> None:
    """In a business-initiated call ``from`` is the business's number: the user is ``to``."""
    terminate = samples.call(
        "wacid.B", "terminate", 1_750_000_300, direction="BUSINESS_INITIATED", status="COMPLETED"
    )
    [event] = _events(samples.calls_change(calls=[terminate]))

    assert event.key == f"{PN}:16505551234"
    assert event.event_id == f"call:{PN}:wacid.B:terminate"
    assert event.data == {
        "call_id": "wacid.B",
        "event": "terminate",
        "direction": "BUSINESS_INITIATED",
        "status": "COMPLETED",
    }


def test_a_call_without_direction_from_the_business_number_belongs_to_the_callee() -> None:
    item = samples.call("wacid.G", "terminate", 10, direction="BUSINESS_INITIATED")
    del item["direction"]
    [event] = _events(samples.calls_change(calls=[item]))

    assert event.key == f"{PN}:16505551234"
    assert event.data["direction"] is None


def test_a_call_named_by_bsuid_only_is_completed_from_contacts() -> None:
    item = samples.call("wacid.C", "connect", 10, wa_id=None, user_id=BSUID)
    contacts = [samples.contact("16505551234", BSUID)]
    [event] = _events(samples.calls_change(calls=[item], contacts=contacts))

    assert event.user == UserRef(user_id=BSUID, wa_id="16505551234")


def test_a_call_naming_no_one_takes_the_user_of_its_one_contact() -> None:
    """pywa reads a call's user from ``contacts[0]``: a call item without ids still has one."""
    item = samples.call("wacid.F", "connect", 10, wa_id=None)
    [event] = _events(samples.calls_change(calls=[item], contacts=[samples.contact("16505551234")]))

    assert event.key == f"{PN}:16505551234"


def test_call_statuses_are_events_of_their_own_per_status() -> None:
    """RINGING then ACCEPTED of one business-initiated call: two call events, two ids."""
    statuses = [
        samples.call_status("wacid.D", "RINGING", 20),
        samples.call_status("wacid.D", "ACCEPTED", 25),
    ]
    ringing, accepted = _events(samples.calls_change(statuses=statuses))

    assert (ringing.kind, ringing.key) == ("call", f"{PN}:16505551234")
    assert ringing.event_id == f"call:{PN}:wacid.D:status:RINGING"
    assert accepted.event_id == f"call:{PN}:wacid.D:status:ACCEPTED"
    assert accepted.data == {
        "call_id": "wacid.D",
        "event": "status",
        "direction": "BUSINESS_INITIATED",
        "status": "ACCEPTED",
    }


def test_a_call_without_any_user_is_a_problem_and_value_errors_still_split() -> None:
    """pywa's terminate fixture carries value-level errors beside the call."""
    nobody = samples.call("wacid.E", "connect", 30, wa_id=None)
    errors = [{"code": 12455, "message": "ERROR_TITLE", "error_data": {"details": "x"}}]
    raw = samples.encode(samples.body(samples.calls_change(calls=[nobody], errors=errors)))

    split = split_body(raw, 1, OPTIONS)

    assert [e.kind for e in split.events] == ["error"]
    assert split.problems == [
        "entry[0].changes[0].value.calls[0]: call has neither from nor from_user_id"
    ]


def test_a_standby_message_splits_like_a_messages_one() -> None:
    """While Meta Business Agent holds the chat the same message comes on ``standby``: the
    same event, only its field differs."""
    contacts = [samples.contact("16505551234", BSUID)]
    message = samples.text_message("wamid.S", 1_750_000_000, "STOP", referral=samples.ad_referral())
    status = samples.status("wamid.O", "delivered", 1_750_000_100, pricing=samples.pmp_pricing())
    plain = _events(
        samples.messages_change(messages=[message], statuses=[status], contacts=contacts)
    )
    standby = _events(
        samples.standby_change(messages=[message], statuses=[status], contacts=contacts)
    )

    assert [e.field for e in standby] == ["standby", "standby"]
    assert [e.kind for e in standby] == ["message", "status"]
    for got, want in zip(standby, plain, strict=True):
        want.field = "standby"
        assert got == want


def test_standby_echoes_of_the_agent_leave_as_one_content_free_change() -> None:
    """The agent's replies are outbound, never user messages: they open no window and their
    text stays here; the user's message beside them still splits."""
    echo = samples.message_echo("wamid.AGENT", 1_750_000_050)
    message = samples.text_message("wamid.U", 1_750_000_000)
    events = _events(samples.standby_change(messages=[message], message_echoes=[echo]))

    assert [(e.kind, e.key) for e in events] == [("message", f"{PN}:16505551234"), ("change", WABA)]
    assert events[1].data == {
        "value_keys": ["message_echoes", "messages", "messaging_product", "metadata"]
    }
    assert b"blue and green" not in b"".join(e.encode() for e in events)


def test_a_standby_change_of_echoes_only_is_no_problem() -> None:
    [event] = _events(samples.standby_change(message_echoes=[samples.message_echo("wamid.A", 5)]))

    assert (event.kind, event.field) == ("change", "standby")


def test_messaging_handovers_stay_a_change() -> None:
    change = {
        "field": "messaging_handovers",
        "value": {"messaging_product": "whatsapp", "metadata": {"phone_number_id": PN}},
    }
    [event] = _events(change)

    assert (event.kind, event.key, event.field) == ("change", WABA, "messaging_handovers")


def test_a_group_message_opens_the_groups_conversation_not_the_participants() -> None:
    message = samples.group_message("wamid.G", 1_750_000_000, GROUP, user_id=BSUID)
    [event] = _events(samples.messages_change(messages=[message]))

    assert event.key == f"{PN}:group.{GROUP}"
    assert event.user == UserRef(user_id=BSUID, wa_id="16505551234")
    assert event.data == {"wamid": "wamid.G", "type": "text", "group_id": GROUP}
    assert event.event_id == f"message:{PN}:wamid.G"


def test_group_statuses_of_two_participants_are_two_events() -> None:
    """Meta bills each participant's delivery: each is its own event, keyed by the group."""
    statuses = [
        samples.group_status("wamid.GO", "delivered", 40, GROUP, participant_wa_id="16505550001"),
        samples.group_status(
            "wamid.GO", "delivered", 41, GROUP, participant_wa_id=None, participant_user_id=BSUID
        ),
    ]
    first, second = _events(samples.messages_change(statuses=statuses))

    assert first.event_id == f"status:{PN}:wamid.GO:16505550001:delivered"
    assert second.event_id == f"status:{PN}:wamid.GO:{BSUID}:delivered"
    assert first.key == second.key == f"{PN}:group.{GROUP}"
    assert (first.data["participant"], second.data["participant"]) == ("16505550001", BSUID)
    assert first.data["group_id"] == GROUP
    assert first.user == UserRef(wa_id="16505550001")


def test_a_group_status_keeps_its_participant_id_when_contacts_add_a_bsuid() -> None:
    """A failed status has no contacts[]; the participant id must match its delivered twin."""
    delivered = samples.group_status("wamid.GF", "delivered", 50, GROUP)
    failed = samples.group_status("wamid.GF", "failed", 51, GROUP, error_code=131026)
    with_contacts = samples.messages_change(
        statuses=[delivered], contacts=[samples.contact("16505551234", BSUID)]
    )
    [d] = _events(with_contacts)
    [f] = _events(samples.messages_change(statuses=[failed]))

    assert d.data["participant"] == f.data["participant"] == "16505551234"
    assert d.user == UserRef(user_id=BSUID, wa_id="16505551234")
    assert f.data["errors"] == [{"code": 131026, "title": "error 131026"}]


def test_the_other_spelling_of_a_group_participant_is_read_too() -> None:
    """Meta's group webhook page also writes ``participant_recipient_id``."""
    item = samples.group_status("wamid.GP", "read", 60, GROUP, participant_wa_id=None)
    item["participant_recipient_id"] = "16505550002"
    [event] = _events(samples.messages_change(statuses=[item]))

    assert event.data["participant"] == "16505550002"


def test_a_number_change_carries_the_new_wa_id_and_the_new_bsuid() -> None:
    item = samples.number_change(
        "wamid.N", 70, "16505551234", "12195555358", new_user_id="US.99999999999999999"
    )
    [event] = _events(samples.messages_change(messages=[item]))

    assert event.key == f"{PN}:16505551234"
    assert event.data["system"] == {
        "type": "user_changed_number",
        "wa_id": "12195555358",
        "user_id": "US.99999999999999999",
    }


def test_a_user_id_change_with_an_empty_from_is_read_by_its_old_bsuid() -> None:
    item = samples.user_id_change("wamid.U2", 80, BSUID, "US.88888888888888888")
    assert item["from"] == ""
    [event] = _events(samples.messages_change(messages=[item]))

    assert event.key == f"{PN}:{BSUID}"
    assert event.user == UserRef(user_id=BSUID)
    assert event.data["system"] == {
        "type": "user_changed_user_id",
        "user_id": "US.88888888888888888",
    }


def test_an_older_number_change_names_the_old_number_in_customer() -> None:
    """Older versions named the old number ``system.customer`` and the new ``new_wa_id``; the
    type was ``customer_changed_number`` (pywa's PhoneNumberChange reads them alike)."""
    item = samples.number_change("wamid.N2", 90, None, None)
    item["system"] = {
        "customer": "16505551234",
        "new_wa_id": "12195555358",
        "type": "customer_changed_number",
    }
    [event] = _events(samples.messages_change(messages=[item]))

    assert event.key == f"{PN}:16505551234"
    assert event.data["system"] == {"type": "user_changed_number", "wa_id": "12195555358"}


def test_a_system_message_without_any_old_id_is_a_problem() -> None:
    item = samples.user_id_change("wamid.U3", 95, None, "US.77777777777777777")
    raw = samples.encode(samples.body(samples.messages_change(messages=[item])))

    split = split_body(raw, 1, OPTIONS)

    assert split.events == []
    assert split.problems == [
        "entry[0].changes[0].value.messages[0]: message has neither from nor from_user_id"
    ]


@pytest.mark.parametrize(
    "change",
    [
        samples.calls_change(
            calls=[
                samples.call("wacid.1", "connect", 1),
                samples.call("wacid.2", "connect", 2, direction="BUSINESS_INITIATED"),
                samples.call("wacid.1", "terminate", 3, status="COMPLETED"),
            ],
            statuses=[samples.call_status("wacid.2", "RINGING", 2)],
            contacts=[samples.contact("16505551234", BSUID)],
        ),
        samples.standby_change(
            messages=[samples.text_message("wamid.1", 1)],
            message_echoes=[samples.message_echo("wamid.2", 2)],
            contacts=[samples.contact("16505551234")],
        ),
        samples.messages_change(
            messages=[
                samples.group_message("wamid.3", 3, GROUP),
                samples.number_change("wamid.4", 4, "16505551234", "1219", new_user_id="US.1"),
                samples.user_id_change("wamid.5", 5, BSUID, "US.2"),
            ],
            statuses=[samples.group_status("wamid.6", "read", 6, GROUP)],
        ),
    ],
    ids=["calls", "standby", "groups-and-identity"],
)
def test_no_content_leaves_with_the_2026_shapes(change: dict[str, Any]) -> None:
    encoded = b"".join(e.encode() for e in _events(change))

    assert encoded  # something was split, so the check below is not vacuous
    for secret in SECRETS:
        assert secret not in encoded
