"""Splitting bodies into events: pure rules, no Kafka."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import PAYLOADS
from wawindow import samples
from wawindow.config import DEFAULT_OPT_OUT_KEYWORDS
from wawindow.split import SplitOptions, normalize_keyword, split_body

OPTIONS = SplitOptions(
    opt_out_keywords=frozenset(normalize_keyword(k) for k in DEFAULT_OPT_OUT_KEYWORDS)
)
PN = "106540352242922"
WABA = "102290129340398"

# file -> [(kind, key)] of the events it must become, in order
EXPECTED = {
    "account_update_volume_based_pricing_tier_update.json": [("change", WABA)],
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

needs_payloads = pytest.mark.skipif(
    not PAYLOADS.is_dir(), reason=f"Meta's sample bodies not at {PAYLOADS}"
)


def _payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


@needs_payloads
def test_every_shared_payload_is_covered() -> None:
    """Each sample body beside the project has an expectation here (none silently untested)."""
    on_disk = {p.name for p in PAYLOADS.glob("*.json")}

    assert on_disk == set(EXPECTED)


@needs_payloads
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_payload_splits_into_expected_events(name: str) -> None:
    """Every shared body becomes the right events with the right conversation keys."""
    split = split_body(_payload(name), 1_000, OPTIONS)

    assert split.reason is None
    assert [(e.kind, e.key) for e in split.events] == EXPECTED[name]


@needs_payloads
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


def test_group_statuses_are_keyed_by_the_group() -> None:
    item = samples.status("wamid.g", "delivered", 5, wa_id="120363000000000000")
    item["recipient_type"] = "group"
    raw = samples.encode(samples.body(samples.messages_change(statuses=[item])))

    [event] = split_body(raw, 1, OPTIONS).events

    assert event.key == f"{PN}:group.120363000000000000"
    assert event.user is None


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
