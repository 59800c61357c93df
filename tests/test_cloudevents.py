"""The times of a published CloudEvent: pure formatting, no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from wawindow.contracts import TIMESTAMPS
from wawindow.engine.cloudevents import iso


@given(st.integers(min_value=TIMESTAMPS.start, max_value=TIMESTAMPS.stop - 1))
def test_a_time_is_iso_8601_utc_as_a_datetime_writes_it(ts: int) -> None:
    assert iso(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_time_names_the_utc_second() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1_780_000_123) == "2026-05-28T20:28:43Z"
