"""The rules model on its own: each concept's pure functions, and the regressions the
property tests found (named after what they showed)."""

from __future__ import annotations

from typing import Any

import pytest

from wawindow.config import Settings
from wawindow.contracts import DAY, CounterField, Metric, Note, TransitionType
from wawindow.rules import engine, opt_out
from wawindow.rules.conversations import conversations
from wawindow.rules.entry_point import entry_points
from wawindow.rules.identity import links_of
from wawindow.rules.ledger import counted_as, record_status
from wawindow.rules.published import ConversationMark, EntryPointMark, WindowMark
from wawindow.rules.service_window import CSW_SECONDS, Window, compact, windows
from wawindow.rules.state import Decision, Message, State

H = 3600
T = 4_000_000_000
KEY = "pn:u"
RULES = engine.Rules.from_settings(Settings())


def ev(kind: str, event_id: str, ts: int, **data: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "kind": kind,
        "waba_id": "w",
        "phone_number_id": "pn",
        "key": KEY,
        "user": {"wa_id": "u"},
        "timestamp": ts,
        "data": data,
    }


def inbound(ts: int, **data: Any) -> dict[str, Any]:
    return ev("message", f"m{ts}", ts, wamid=f"m{ts}", type="text", **data)


def status(wamid: str, state: str, ts: int, **data: Any) -> dict[str, Any]:
    return ev("status", f"s:{wamid}:{state}", ts, wamid=wamid, status=state, **data)


# -- the tunables ----------------------------------------------------------------------------


def test_the_rules_tunables_come_from_the_settings_that_name_them() -> None:
    settings = Settings.from_env(
        {
            "WAWINDOW_CLOSING_SOON_OFFSETS": "600,7200",
            "WAWINDOW_FREE_ENTRY_POINT_HOURS": "168",
            "WAWINDOW_COUNTS_RETENTION_DAYS": "30",
        }
    )

    rules = engine.Rules.from_settings(settings)

    assert rules.closing_soon_offsets_s == (7200, 600)  # largest first
    assert rules.free_entry_point_s == 168 * H
    assert rules.counts_retention_s == 30 * DAY
    assert (RULES.free_entry_point_s, RULES.counts_retention_s) == (72 * H, 400 * DAY)


# -- the service window ------------------------------------------------------------------------


def test_windows_are_the_chains_of_user_activity_less_than_24_hours_apart() -> None:
    ws = windows([T, T + 23 * H, T + 23 * H + CSW_SECONDS], [])
    assert ws == [
        Window(T, T + 23 * H, T + 47 * H, "expired"),
        Window(T + 47 * H, T + 47 * H, T + 71 * H, "expired"),
    ]


def test_a_131047_failure_ends_the_window_it_falls_in_and_a_later_message_starts_anew() -> None:
    ws = windows([T, T + 2 * H], [T + H])
    assert ws == [
        Window(T, T, T + H, "meta_131047"),
        Window(T + 2 * H, T + 2 * H, T + 26 * H, "expired"),
    ]


def test_a_failure_in_the_same_second_as_a_message_counts_as_after_it() -> None:
    assert windows([T], [T]) == [Window(T, T, T + CSW_SECONDS, "expired")]


def test_compacting_old_activity_never_changes_a_window() -> None:
    inbound_ = [T + i * H for i in range(30)] + [T + 100 * H]
    assert compact(inbound_, [], older_than=T + 200 * H) == []  # both windows long over
    kept = compact(inbound_, [], older_than=T + 20 * H)
    assert windows(kept, []) == windows(inbound_, [])
    assert len(kept) < len(inbound_)


# -- the ledger -------------------------------------------------------------------------------


def test_the_earliest_statuss_pricing_wins_whatever_arrives_first() -> None:
    marketing = {"pricing": {"category": "marketing", "type": "regular"}}
    utility = {"pricing": {"category": "utility", "type": "regular"}}
    a, b = Message(), Message()
    record_status(a, "sent", T, marketing)
    record_status(a, "read", T + 5, utility)
    record_status(b, "read", T + 5, utility)
    record_status(b, "sent", T, marketing)
    assert counted_as(a) == counted_as(b) == [T + 5, "marketing", "regular", "true"]


def test_a_status_never_moves_back_and_failed_is_terminal() -> None:
    m = Message()
    assert record_status(m, "read", T + 2, {}) is False
    assert record_status(m, "delivered", T + 1, {}) is True  # out of order
    record_status(m, "failed", T + 3, {})
    record_status(m, "read", T + 4, {})
    assert (m.rank, m.first, m.delivered) == (9, T + 1, T + 1)


# -- opt-out ----------------------------------------------------------------------------------


def test_the_newest_decision_wins_and_a_tie_goes_to_the_stop() -> None:
    s = State()
    opt_out.decide(s, opt_out.MARKETING, T + 10, True, "user_preferences")
    opt_out.decide(s, opt_out.MARKETING, T + 5, False, "user_preferences")
    assert opt_out.opted_out(s, opt_out.MARKETING)
    opt_out.decide(s, opt_out.MARKETING, T + 20, False, "user_preferences")
    opt_out.decide(s, opt_out.MARKETING, T + 20, True, "meta_131050")
    assert opt_out.opted_out(s, opt_out.MARKETING)


# -- the free entry point and conversations -----------------------------------------------------


def test_the_entry_point_opens_at_the_first_message_sent_after_the_referral() -> None:
    before, reply = Message(first=T - 60), Message(first=T + 60)
    eps = entry_points([T], {"before": before, "reply": reply}, 72 * H)
    assert [(e.opened, e.expires, e.source) for e in eps] == [(T + 60, T + 60 + 72 * H, "derived")]


def test_an_entry_point_closes_the_open_conversations_and_holds_its_own() -> None:
    service = Message(first=T, delivered=T)
    reply = Message(first=T + H, delivered=T + H)
    ws = windows([T - 60], [])
    eps = entry_points([T + 30 * 60], {"a": service, "b": reply}, 72 * H)
    convs, _ = conversations({"a": service, "b": reply}, ws, eps)
    assert [(c.category, c.opened, c.expires) for c in convs] == [
        ("service", T, T + H),
        ("referral_conversion", T + H, T + H + 72 * H),
    ]


def test_a_conversation_opens_at_the_earliest_delivery_of_its_category() -> None:
    ms = {
        "x": Message(delivered=T + H, category="marketing"),
        "y": Message(delivered=T, category="marketing"),
        "z": Message(delivered=T + 2 * H, category="utility"),
    }
    convs, _ = conversations(ms, [], [])
    assert [(c.opener, c.category, c.initiator) for c in convs] == [
        ("y", "marketing", "business"),
        ("z", "utility", "business"),
    ]


# -- identity ----------------------------------------------------------------------------------


def test_a_number_change_links_every_old_key_to_the_new_bsuid() -> None:
    event = {
        "kind": "message",
        "phone_number_id": "pn",
        "key": "pn:US.old",
        "user": {"user_id": "US.old", "wa_id": "111"},
        "data": {
            "type": "system",
            "system": {"type": "user_changed_number", "wa_id": "222", "user_id": "US.new"},
        },
    }
    assert set(links_of(event)) == {
        ("pn:US.old", "pn:US.new"),
        ("pn:111", "pn:US.new"),
        ("pn:222", "pn:US.new"),
    }


def test_a_group_participants_ids_link_nothing() -> None:
    event = {
        "kind": "message",
        "phone_number_id": "pn",
        "key": "pn:group.g",
        "user": {"user_id": "US.1", "wa_id": "111"},
        "data": {"group_id": "g"},
    }
    assert links_of(event) == []


# -- the engine as a whole --------------------------------------------------------------------


def test_a_repeated_event_changes_nothing() -> None:
    s = State()
    first = engine.apply(s, KEY, [inbound(T)], T, RULES)
    again = engine.apply(s, KEY, [inbound(T)], T, RULES)
    assert [t.type for t in first.transitions] == [TransitionType.SERVICE_WINDOW_OPENED]
    assert again.transitions == []
    assert again.counters == []
    assert again.results[0].notes == (Note.DUPLICATE,)


def test_an_event_without_a_usable_timestamp_is_rejected_and_changes_nothing() -> None:
    s = State()
    out = engine.apply(s, KEY, [ev("message", "m", 253402300800 * 1000, type="text")], T, RULES)
    assert out.results[0].error is not None
    assert s.empty


def test_a_late_message_that_joins_two_windows_retracts_the_later_and_takes_its_count() -> None:
    s = State()
    engine.apply(s, KEY, [inbound(T), inbound(T + 30 * H)], T + 31 * H, RULES)
    out = engine.apply(s, KEY, [inbound(T + 20 * H)], T + 31 * H, RULES)
    types = [t.type for t in out.transitions]
    assert TransitionType.SERVICE_WINDOW_RETRACTED in types
    opened = sum(c.delta for c in out.counters if c.metric == Metric.SERVICE_WINDOWS_OPENED)
    assert opened == -1
    assert len(windows(s.inbound, s.cuts)) == 1


def test_regression_a_groups_state_never_takes_a_participant_as_its_user() -> None:
    """Found by the order-independence property: the group's user was whoever wrote last."""
    a, b = State(), State()
    one = {**inbound(T, group_id="g"), "user": {"wa_id": "111"}, "event_id": "g1"}
    two = {**inbound(T + 60, group_id="g"), "user": {"wa_id": "222"}, "event_id": "g2"}
    engine.apply(a, KEY, [one, two], T + H, RULES)
    engine.apply(b, KEY, [two, one], T + H, RULES)
    assert a.wa_id is None
    assert a.encode() != b""
    assert (a.wa_id, a.user_id) == (b.wa_id, b.user_id)


def test_the_state_document_round_trips() -> None:
    s = State()
    engine.apply(
        s,
        KEY,
        [
            inbound(T, referral={"source_type": "ad"}),
            status("o", "sent", T + 60, pricing={"category": "utility", "type": "regular"}),
            status("o", "delivered", T + 61),
            ev("user_preference", "p", T + 70, category="marketing_messages", value="stop"),
        ],
        T + H,
        RULES,
    )
    assert State.decode(s.encode()).encode() == s.encode()


def test_a_stored_document_names_the_user_of_its_key_in_one_byte() -> None:
    s = State(waba_id="w", user_id="US.7", wa_id="u", inbound=[T])
    stored = s.encode(KEY)  # KEY is "pn:u": the wa_id is the key's user, the BSUID is not
    assert b'"a":1' in stored
    assert b'"u":"US.7"' in stored
    assert len(stored) == len(s.encode()) - len('"u"') + len("1")
    assert State.decode(stored, KEY) == s
    assert State.decode(State(user_id="US.7").encode("pn:US.7"), "pn:US.7").user_id == "US.7"
    with pytest.raises(ValueError, match="names the user of its key"):
        State.decode(stored)  # without the key, the document cannot be read


# every field of a state, each under its short name in the fields' order; the marks as arrays
STORED = (
    b'{"w":"w","u":"US.7","a":1,"i":[1700000000],"x":[1700000005],"r":[1700000000],'
    b'"m":{"o":{"r":2,"f":1700000060,"d":1700000061,"c":"utility","t":"regular","pr":1,'
    b'"k":[1700000061,"utility","regular","true"]}},"b":{"0123456789ab":1699913600},'
    b'"d":{"marketing_opt_out":[1700000070,true,"user_preferences"]},'
    b'"s":{"abcdefabcdef":1700003600},"pw":{"1700000000":[1700086400,1,2,1700000005]},'
    b'"pf":{"1700000060":[1700259260,0,"derived"]},'
    b'"pc":{"o":["utility","business","regular","derived",null,1700000061,1700086461,1]},'
    b'"po":{"marketing_opt_out":true},"dg":["o"],"l":{"pn:US.7":"3"},"e":1699913600,'
    b'"em":["fedcba987654"]}'
)


def test_a_state_is_stored_as_this_document() -> None:
    """What Redis holds: a change of it is a change of the stored format (old documents
    must still be read)."""
    s = State(
        waba_id="w", user_id="US.7", wa_id="u", inbound=[1700000000], cuts=[1700000005],
        referrals=[1700000000],
        messages={"o": Message(rank=2, first=1700000060, delivered=1700000061,
                               category="utility", ptype="regular", pricing_rank=1,
                               counted=[1700000061, "utility", "regular", "true"])},
        billed={"0123456789ab": 1699913600},
        decisions={"marketing_opt_out": Decision(1700000070, True, "user_preferences")},
        applied={"abcdefabcdef": 1700003600},
        windows={1700000000: WindowMark(1700086400, closed=True, warned=2,
                                        corrected_at=1700000005)},
        entry_points={1700000060: EntryPointMark(1700259260, closed=False, source="derived")},
        conversations={"o": ConversationMark("utility", "business", "regular", "derived", None,
                                             1700000061, 1700086461, closed=True)},
        opt_outs={"marketing_opt_out": True}, disagreements=["o"], linked={"pn:US.7": "3"},
        erased=1699913600, erased_messages=["fedcba987654"],
    )  # fmt: skip
    assert s.encode(KEY) == STORED
    assert State.decode(STORED, KEY) == s
    assert State.decode(s.encode(), "") == s
    assert State.decode(STORED, KEY).encode(KEY) == STORED


def test_a_counter_field_is_encoded_as_the_store_keeps_it() -> None:
    f = CounterField.at(T + 901, "w", "pn", Metric.CONVERSATIONS_OPENED, ("utility", "user"))
    assert f.encode() == f"{(T + 901) % 86400 // 900}|w|pn|conversations_opened|utility|user"
    assert CounterField.decode(f.day, f.encode()) == f


def test_a_late_status_of_a_message_sent_before_an_erasure_brings_nobody_back() -> None:
    from wawindow.engine.views import view_of

    pricing = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}
    s = State()
    first = [
        inbound(T),
        status("o1", "sent", T + 60, pricing=pricing),
        status("o1", "delivered", T + 61, pricing=pricing),
    ]
    engine.apply(s, KEY, first, T + 62, RULES)
    engine.erase(s, KEY, T + 100, T + 100, RULES)
    late = engine.apply(s, KEY, [status("o1", "read", T + 200, pricing=pricing)], T + 200, RULES)
    older = engine.apply(s, KEY, [inbound(T + 50)], T + 200, RULES)

    assert late.results[0].notes == (Note.ERASED,)
    assert older.results[0].notes == (Note.ERASED,)
    assert (late.transitions, late.counters, older.counters) == ([], [], [])
    assert view_of(s, "pn", T + 200, RULES) is None
    assert (s.inbound, s.messages, s.wa_id, s.linked) == ([], {}, None, {})


def test_regression_a_merge_after_an_erasure_keeps_what_came_since() -> None:
    """A person erased once and back since: linking their other ids (merges) forgets only
    what the erasure covered. Before, every billed message, the new ones too, was taken for
    an erased one, so its late statuses were ignored as the erased person's; and each merge
    forgot which keys earlier merges had taken in."""
    pricing = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}
    s = State()
    engine.apply(
        s, KEY, [inbound(T), status("o1", "delivered", T + 60, pricing=pricing)], T + 60, RULES
    )
    engine.erase(s, KEY, T + 100, T + 100, RULES)
    back = T + 1000
    engine.apply(
        s,
        KEY,
        [inbound(back), status("o2", "delivered", back + 60, pricing=pricing)],
        back + 60,
        RULES,
    )
    later = back + RULES.history_s + 48 * H  # the history is over: o2 is in the billed memory
    engine.apply(s, KEY, [inbound(later)], later, RULES)
    billed = dict(s.billed)
    assert billed, "o2 moved from the ledger to the billed memory"

    other = State()
    engine.apply(other, "pn:US.u", [inbound(later + 5)], later + 5, RULES)
    engine.merge(s, KEY, other, "pn:US.u", "1", later + 10, RULES)

    assert s.billed == billed
    another = State()
    engine.apply(another, "pn:111", [inbound(later + 6)], later + 6, RULES)
    engine.merge(s, KEY, another, "pn:111", "3", later + 11, RULES)
    assert s.linked == {"pn:US.u": "1", "pn:111": "3"}  # a repeated link merges nothing twice
    late = engine.apply(s, KEY, [status("o2", "read", later + 20)], later + 20, RULES)
    assert Note.ERASED not in late.results[0].notes
    assert len(s.erased_messages) == 1  # o1's digest only


def test_a_window_that_ends_exactly_at_the_historys_horizon_is_counted_once() -> None:
    """Prune forgets a window's mark and its messages together: a window that ended exactly
    where the history begins spans nothing there, so both go (before, the mark went and the
    messages stayed, and the next event published and counted the window again)."""
    t = 4_000_000_000
    state = State()
    opened: list[int] = []
    steps = [
        (t, [inbound(t)]),
        (t + 2 * DAY, None),  # the sweep closes it
        (t + 3 * DAY, [inbound(t + 3 * DAY)]),
        (t + DAY + RULES.history_s, [inbound(t + 3 * DAY + 60)]),  # the horizon: its end
    ]
    for now, events in steps:
        if events is None:
            outcome = engine.sweep(state, KEY, now, RULES)
        else:
            outcome = engine.apply(state, KEY, events, now, RULES)
        opened += [
            c.delta
            for c in outcome.counters
            if c.metric == Metric.SERVICE_WINDOWS_OPENED and c.at == t
        ]

    assert sum(opened) == 1
    assert t not in state.inbound
