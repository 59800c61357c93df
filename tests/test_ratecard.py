"""The operator's rate card: markets by calling code or a BSUID's country, dated cards, Meta's
authentication-international rule, and clear refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wawindow.errors import ConfigError
from wawindow.finance.ratecard import (
    AuthInternational,
    authentication_rate,
    country_of,
    estimate,
    load_rate_cards,
    rate_for,
)


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
                      "rate": "marketing", "rate_card_since": "2026-07-01"}  # fmt: skip
    assert after is not None
    assert after["rate_card_since"] == "2026-10-01"
    assert free is not None
    assert (free["amount"], free["rate"]) == ("0", None)
    assert none_yet is None
    assert load_rate_cards(None) == ()


BSUID = "US.13491208655302741918"
US_WABA, IN_WABA, OTHER_WABA = "102290129340398", "203391230451409", "304492341562510"
START, ID_START = at("2026-06-01"), at("2026-12-01")
COUNTRY_CARDS: dict[str, Any] = {
    "cards": [
        {"since": "2026-10-01", "currency": "USD", "markets": [
            {"market": "North America", "calling_codes": ["1"], "countries": ["US", "CA"],
             "rates": {"marketing": 0.025, "marketing_lite": 0.025, "authentication": 0.0034}},
            {"market": "Jamaica", "calling_codes": ["1876"], "countries": ["JM"],
             "rates": {"marketing": 0.0604}},
            {"market": "India", "calling_codes": ["91"], "countries": ["IN"],
             "rates": {"marketing": 0.0107, "authentication": 0.0014,
                       "authentication_international": 0.028}},
            {"market": "Indonesia", "calling_codes": ["62"], "countries": ["ID"],
             "rates": {"authentication": 0.03, "authentication_international": 0.136}},
            {"market": "Rest of World", "calling_codes": ["*"], "countries": ["*"],
             "rates": {"marketing": 0.0604, "authentication": 0.008}},
        ]},
    ],
    # as Meta announced them: BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE's country and
    # AUTH_INTL_PRICE_ELIGIBILITY_UPDATE's auth_international_rate_eligibility
    "wabas": {
        US_WABA: {"primary_business_location": "US",
                  "auth_international_rate_eligibility": {
                      "start_time": START,
                      "exception_countries": [{"country_code": "ID", "start_time": ID_START}]}},
        IN_WABA: {"primary_business_location": "IN",
                  "auth_international_rate_eligibility": {"start_time": START}},
    },
}  # fmt: skip


def test_a_bsuid_begins_with_its_users_iso_country_code() -> None:
    assert country_of(BSUID) == "US"
    assert country_of("IN.8f3a9C") == "IN"
    assert country_of("16505551234") is None  # a wa_id
    assert country_of("us.1349") is None  # not an ISO 3166 alpha-2 code
    assert country_of("USA.1349") is None
    assert country_of("US.") is None
    assert country_of(None) is None


def test_a_user_known_only_by_bsuid_is_placed_by_its_country(tmp_path: Path) -> None:
    cards = load_rate_cards(write(tmp_path, COUNTRY_CARDS))
    day = at("2026-11-29")

    def market(user_id: str, wa_id: str | None = None) -> str | None:
        found = estimate(cards, wa_id, "marketing", True, day, user_id=user_id)
        return None if found is None else found["market"]

    assert market(BSUID) == "North America"
    assert market("JM.0042") == "Jamaica"  # a country, not a calling code: no prefix to share
    assert market("DE.0042") == "Rest of World"  # '*' takes the countries no market lists
    assert market("not-a-bsuid") is None
    assert market("IN.0042", wa_id="16505551234") == "North America"  # the number decides
    # a card written before countries existed places a BSUID-only user nowhere, as before
    old = load_rate_cards(write(tmp_path, CARDS))
    assert estimate(old, None, "marketing", True, day, user_id=BSUID) is None
    assert estimate(old, "16505551234", "marketing", True, day, user_id=BSUID) is not None


def test_the_card_knows_marketing_lite_and_authentication_international(tmp_path: Path) -> None:
    cards = load_rate_cards(write(tmp_path, COUNTRY_CARDS))
    day = at("2026-11-29")

    lite = estimate(cards, "16505551234", "marketing_lite", True, day)
    international = estimate(cards, "919876543210", "authentication", True, day, waba_id=US_WABA)

    assert lite is not None
    assert (lite["rate"], lite["amount"]) == ("marketing_lite", "0.025")
    assert international is not None
    assert (international["rate"], international["amount"]) == (
        "authentication_international",
        "0.028",
    )
    assert (international["market"], international["currency"]) == ("India", "USD")


def test_an_endpoint_says_which_rate_of_the_card_a_category_takes() -> None:
    assert rate_for("messages", "marketing") == "marketing"
    assert rate_for("messages", "authentication") == "authentication"
    assert rate_for("marketing_messages", "marketing") == "marketing_lite"
    assert rate_for("marketing_messages", "utility") is None  # marketing templates only
    assert rate_for("marketing_messages", "service") is None
    assert rate_for("sms", "marketing") is None


US_BUSINESS = AuthInternational("US", START, {"ID": ID_START})


@pytest.mark.parametrize(
    ("country_has_rate", "recipient", "business", "when", "billed"),
    [
        # all of Meta's conditions hold: the business is US-based, the user Indian
        (True, "IN", US_BUSINESS, START, "authentication_international"),
        # the user's country has no authentication-international rate
        (False, "IN", US_BUSINESS, START, "authentication"),
        # the business is not eligible
        (True, "IN", None, START, "authentication"),
        (True, "IN", AuthInternational("US"), START, "authentication"),
        # the business is based in the user's country (Meta's Indonesia example)
        (True, "ID", AuthInternational("ID", START), START, "authentication"),
        (True, "IN", AuthInternational("IN", START), START, "authentication"),
        # delivered before the business's start time, the general one or the country's own
        (True, "IN", US_BUSINESS, START - 1, "authentication"),
        (True, "ID", US_BUSINESS, START, "authentication"),
        (True, "ID", US_BUSINESS, ID_START, "authentication_international"),
        # an exception country alone makes a business eligible there, and only there
        (True, "ID", AuthInternational("US", None, {"ID": START}), START,
         "authentication_international"),
        (True, "IN", AuthInternational("US", None, {"ID": START}), START, "authentication"),
        # what cannot be told: the user's country, the business's location
        (True, None, US_BUSINESS, START, None),
        (True, "IN", AuthInternational(None, START), START, None),
    ],
)  # fmt: skip
def test_authentication_international_is_billed_only_when_all_of_metas_conditions_hold(
    country_has_rate: bool,
    recipient: str | None,
    business: AuthInternational | None,
    when: int,
    billed: str | None,
) -> None:
    assert (
        authentication_rate(
            country_has_rate=country_has_rate,
            recipient_country=recipient,
            business=business,
            delivered_at=when,
        )
        == billed
    )


def test_an_authentication_estimate_follows_the_sending_wabas_standing(tmp_path: Path) -> None:
    cards = load_rate_cards(write(tmp_path, COUNTRY_CARDS))
    day = at("2026-11-29")

    def rate(wa_id: str | None, waba_id: str | None, user_id: str | None = None) -> Any:
        found = estimate(cards, wa_id, "authentication", True, day, user_id=user_id,
                         waba_id=waba_id)  # fmt: skip
        return None if found is None else (found["rate"], found["amount"])

    assert rate("919876543210", US_WABA) == ("authentication_international", "0.028")
    assert rate(None, US_WABA, user_id="IN.0042") == ("authentication_international", "0.028")
    assert rate("919876543210", IN_WABA) == ("authentication", "0.0014")  # same country
    assert rate("919876543210", OTHER_WABA) == ("authentication", "0.0014")  # not eligible
    assert rate("6281234567890", US_WABA) == ("authentication", "0.03")  # ID starts later
    assert rate("16505551234", US_WABA) == ("authentication", "0.0034")  # no such rate there
    assert rate("919876543210", None) is None  # which business sends decides it
    assert rate("16505551234", None) == ("authentication", "0.0034")  # no such rate: cannot
    # a file declaring no WABA: every business is taken as not eligible
    plain = load_rate_cards(write(tmp_path, {"cards": COUNTRY_CARDS["cards"]}))
    found = estimate(plain, "919876543210", "authentication", True, day)
    assert found is not None
    assert found["rate"] == "authentication"


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
        ({"cards": [{"since": "2026-01-01", "currency": "USD", "markets": [
            {"market": "X", "calling_codes": ["1"], "countries": ["USA"], "rates": {}}]}]},
         "ISO 3166"),
        ({"cards": [{"since": "2026-01-01", "currency": "USD", "markets": [
            {"market": "X", "calling_codes": ["1"], "countries": ["US"], "rates": {}},
            {"market": "Y", "calling_codes": ["2"], "countries": ["US"], "rates": {}}]}]},
         "two markets"),
        ({"cards": [], "wabas": {"102290129340398": {"primary_business_location": "USA"}}},
         "primary_business_location"),
        ({"cards": [], "wabas": {"102290129340398": {"auth_international_rate_eligibility":
            {"start_time": "2026-06-01"}}}}, "Unix seconds"),
        ({"cards": [], "wabas": {"102290129340398": {"auth_international_rate_eligibility":
            {"exception_countries": [{"country_code": "Indonesia", "start_time": 1}]}}}},
         "Indonesia"),
        ({"cards": [], "wabas": {"my-waba": {}}}, "digits"),
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
    day = at("2026-11-29")
    by_bsuid = estimate((card,), None, "marketing_lite", True, day, user_id=BSUID)
    assert by_bsuid is not None
    assert (by_bsuid["market"], by_bsuid["rate"]) == ("North America", "marketing_lite")
