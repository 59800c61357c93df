"""The operator's rate card: markets by calling code, dated cards, and clear refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wawindow.errors import ConfigError
from wawindow.ratecard import estimate, load_rate_cards


def at(day: str) -> int:
    return int(datetime.fromisoformat(day + "T12:00:00+00:00").astimezone(UTC).timestamp())


CARDS: dict[str, Any] = {
    "cards": [
        {"since": "2026-10-01", "currency": "USD", "markets": [
            {"market": "North America", "calling_codes": ["1"],
             "rates": {"marketing": 0.025, "utility": 0.0034, "service": 0.0034}},
            {"market": "Jamaica", "calling_codes": ["1876"], "rates": {"marketing": 0.0604}},
            {"market": "India", "calling_codes": ["91"],
             "rates": {"marketing": 0.0107, "authentication": 0.0014}},
            {"market": "Rest of World", "calling_codes": ["*"], "rates": {"marketing": 0.0604}},
        ]},
        {"since": "2026-07-01", "currency": "USD", "markets": [
            {"market": "Everywhere", "calling_codes": ["*"], "rates": {"marketing": 0.02}},
        ]},
    ]
}  # fmt: skip


def write(tmp_path: Path, doc: Any) -> str:
    path = tmp_path / "rates.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_the_longest_calling_code_wins_and_star_takes_the_rest(tmp_path: Path) -> None:
    cards = load_rate_cards(write(tmp_path, CARDS))
    day = at("2026-11-29")

    def price(wa_id: str, category: str = "marketing") -> tuple[str, str] | None:
        found = estimate(cards, wa_id, category, True, day)
        return None if found is None else (found["market"], found["amount"])

    assert price("16505551234") == ("North America", "0.025")
    assert price("18765550000") == ("Jamaica", "0.0604")
    assert price("919876543210", "authentication") == ("India", "0.0014")
    assert price("4915112345678") == ("Rest of World", "0.0604")
    assert price("4915112345678", "utility") is None  # no rate for it there
    assert estimate(cards, None, "marketing", True, day) is None  # a BSUID alone: no market


def test_the_card_of_the_day_applies_and_free_messages_cost_zero(tmp_path: Path) -> None:
    cards = load_rate_cards(write(tmp_path, CARDS))

    before = estimate(cards, "16505551234", "marketing", True, at("2026-09-30"))
    after = estimate(cards, "16505551234", "marketing", True, at("2026-10-01"))
    free = estimate(cards, "16505551234", "service", False, at("2026-11-29"))
    none_yet = estimate(cards, "16505551234", "marketing", True, at("2026-06-30"))

    assert before == {"amount": "0.02", "currency": "USD", "market": "Everywhere",
                      "rate_card_since": "2026-07-01"}  # fmt: skip
    assert after is not None
    assert after["rate_card_since"] == "2026-10-01"
    assert free is not None
    assert free["amount"] == "0"
    assert none_yet is None
    assert load_rate_cards(None) == ()


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ("not json", "Expecting value"),
        ({"cards": [{"since": "soon", "currency": "USD", "markets": []}]}, "soon"),
        ({"cards": [{"since": "2026-01-01", "currency": "dollars", "markets": []}]}, "ISO 4217"),
        ({"cards": [{"since": "2026-01-01", "currency": "USD", "markets": [
            {"market": "X", "calling_codes": ["1"], "rates": {"fax": 1}}]}]}, "fax"),
        ({"cards": [{"since": "2026-01-01", "currency": "USD", "markets": [
            {"market": "X", "calling_codes": ["1"], "rates": {"marketing": -1}}]}]}, "negative"),
        ({"cards": [{"since": "2026-01-01", "currency": "USD", "markets": [
            {"market": "X", "calling_codes": ["+1"], "rates": {}}]}]}, "digits"),
        ({"cards": [{"since": "2026-01-01", "currency": "USD", "markets": []},
                    {"since": "2026-01-01", "currency": "EUR", "markets": []}]}, "share"),
    ],
)  # fmt: skip
def test_a_bad_rate_card_stops_start_up_naming_the_setting(
    tmp_path: Path, doc: Any, says: str
) -> None:
    with pytest.raises(ConfigError, match="WAWINDOW_RATE_CARD_FILE") as raised:
        load_rate_cards(write(tmp_path, doc))
    assert says in str(raised.value)


def test_the_documented_example_rate_card_loads() -> None:
    example = Path(__file__).parent.parent / "docs" / "examples" / "rate-card.json"

    [card] = load_rate_cards(str(example))

    assert card.market_of("16505550102") is not None
    assert {m.name for m in card.markets} >= {"North America", "Rest of World"}
