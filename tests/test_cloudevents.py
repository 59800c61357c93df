"""The times and the subject of a published CloudEvent: pure formatting, no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from wawindow.contracts import TIMESTAMPS, TransitionType
from wawindow.engine.cloudevents import iso, subject, to_cloudevent
from wawindow.keys import group_conversation_key
from wawindow.rules.transitions import Transition, transition_id


@given(st.integers(min_value=TIMESTAMPS.start, max_value=TIMESTAMPS.stop - 1))
def test_a_time_is_iso_8601_utc_as_a_datetime_writes_it(ts: int) -> None:
    assert iso(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_time_names_the_utc_second() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1_780_000_123) == "2026-05-28T20:28:43Z"


def transition(key: str, user_id: str | None = None, wa_id: str | None = None) -> Transition:
    kind = TransitionType.SERVICE_WINDOW_OPENED
    return Transition(kind, transition_id(key, kind, (1,)), 1, key, {}, "1", "2", user_id, wa_id)


def test_a_groups_events_name_the_group_and_a_users_the_user() -> None:
    group = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"

    assert to_cloudevent(transition(group_conversation_key("2", group)))["subject"] == group
    assert subject(transition("2:US.1", "US.1", "16505551234")) == "US.1"
    assert subject(transition("2:16505551234", None, "16505551234")) == "16505551234"
    assert subject(transition("2:US.1")) == "US.1"  # ids not learned yet: the key's user


@given(
    st.text(max_size=30),
    st.one_of(st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.text(max_size=5)),
)
def test_the_subject_is_never_empty(key: str, user_id: str | None, wa_id: str | None) -> None:
    got = to_cloudevent(transition(key, user_id, wa_id))["subject"]

    assert isinstance(got, str)
    assert got
