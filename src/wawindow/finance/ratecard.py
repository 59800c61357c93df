"""The operator's rate card: list prices per market and pricing category, so that
``/v1/send-check`` can say what a message is expected to cost in money, not only its category.

Meta's webhooks carry no amounts and its rates change by date and market, so the prices come
from a JSON file the operator keeps (``WAWINDOW_RATE_CARD_FILE``)::

    {"cards": [
      {"since": "2026-10-01", "currency": "USD",
       "markets": [
         {"market": "North America", "calling_codes": ["1"], "countries": ["US", "CA"],
          "rates": {"marketing": 0.025, "marketing_lite": 0.025, "utility": 0.0034,
                    "authentication": 0.0034, "service": 0.0034}},
         {"market": "India", "calling_codes": ["91"], "countries": ["IN"],
          "rates": {"marketing": 0.0107, "authentication": 0.0014,
                    "authentication_international": 0.028}},
         {"market": "Rest of World", "calling_codes": ["*"], "countries": ["*"],
          "rates": {"marketing": 0.0604, "utility": 0.0077}}]}],
     "wabas": {
       "102290129340398": {"primary_business_location": "US",
                           "auth_international_rate_eligibility": {"start_time": 1748780624}}}}

A user's market is the one whose calling code is the longest prefix of their ``wa_id``; ``*``
matches any number no other market claims. A user known only by a BSUID (``US.1349…``: an ISO
3166 alpha-2 country code and a dot) is placed by that country in the market whose
``countries`` list it (``*`` there takes the countries no market lists); ``countries`` is
optional, and a card without it places BSUID-only users nowhere, as before. A card applies from
00:00 UTC of ``since`` until the next card.

Authentication templates are billed the market's ``authentication_international`` rate only
when Meta says so (``authentication_rate``): the operator copies what Meta announced to each
WABA into ``wabas``, the ``country`` of its ``BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE`` as
``primary_business_location`` and the ``auth_international_rate_eligibility`` object of its
``AUTH_INTL_PRICE_ELIGIBILITY_UPDATE`` as is. A WABA not listed is not eligible.

These are list prices: Meta's volume tiers for utility and authentication, and a max price set
on the Marketing Messages API, are not modelled, so finance's truth stays Meta's invoice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from wawindow.errors import ConfigError

AUTHENTICATION = "authentication"
AUTHENTICATION_INTERNATIONAL = "authentication_international"
CATEGORIES = frozenset(
    {
        "marketing",
        "marketing_lite",  # marketing templates sent through the Marketing Messages (Lite) API
        "utility",
        AUTHENTICATION,
        AUTHENTICATION_INTERNATIONAL,
        "service",
    }
)
ANY_MARKET = "*"
# Meta's send endpoints (``POST /<PHONE_NUMBER_ID>/<endpoint>``) a sender may name in
# send-check, with the card's rate for each category the endpoint sends; "messages" (Cloud
# API) is the default. The Marketing Messages Lite API sends marketing templates only, and Meta
# bills them as ``marketing_lite``.
ENDPOINTS: dict[str, dict[str, str] | None] = {
    "messages": None,  # every category, at its own rate
    "marketing_messages": {"marketing": "marketing_lite"},
}
_BSUID = re.compile(r"([A-Z]{2})\.[0-9A-Za-z]{1,128}")
_COUNTRY = re.compile(r"[A-Z]{2}")


def country_of(user_id: str | None) -> str | None:
    """The ISO 3166 alpha-2 country a BSUID begins with (``US`` for ``US.1349…``), else None."""
    found = _BSUID.fullmatch(user_id or "")
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class Market:
    name: str
    calling_codes: tuple[str, ...]
    rates: dict[str, Decimal]
    countries: tuple[str, ...] = ()  # ISO 3166 alpha-2 codes, or "*"

    def country(self) -> str | None:
        """The one country this market is, if it lists exactly one."""
        one = self.countries[0] if len(self.countries) == 1 else ANY_MARKET
        return None if one == ANY_MARKET else one


@dataclass(frozen=True, slots=True)
class AuthInternational:
    """What Meta announced to one WABA about authentication-international rates."""

    primary_business_location: str | None  # ISO 3166 alpha-2; None: not (yet) determined
    start_time: int | None = None  # Unix seconds, for every country without an exception
    exception_countries: Mapping[str, int] = field(default_factory=dict)

    def start_for(self, country: str) -> int | None:
        """When the rate starts for the business in ``country``; None: never (not eligible)."""
        return self.exception_countries.get(country, self.start_time)


@dataclass(frozen=True, slots=True)
class RateCard:
    since: date
    currency: str
    markets: tuple[Market, ...]
    # the file's ``wabas``, the same on every card of the file: WABA ID -> what Meta announced
    wabas: Mapping[str, AuthInternational] = field(default_factory=dict)

    def market_of(self, wa_id: str) -> Market | None:
        """The market whose calling code is the longest prefix of ``wa_id``, else ``*``'s."""
        digits = "".join(c for c in wa_id if c.isdigit())
        best: tuple[int, Market] | None = None
        fallback = None
        for market in self.markets:
            for code in market.calling_codes:
                if code == ANY_MARKET:
                    fallback = market
                elif digits.startswith(code) and (best is None or len(code) > best[0]):
                    best = (len(code), market)
        return best[1] if best is not None else fallback

    def market_of_country(self, country: str) -> Market | None:
        """The market listing ``country`` (ISO 3166 alpha-2), else the one listing ``*``."""
        fallback = None
        for market in self.markets:
            if country in market.countries:
                return market
            if ANY_MARKET in market.countries:
                fallback = market
        return fallback

    def place(self, wa_id: str | None, user_id: str | None) -> tuple[Market, str | None] | None:
        """The user's market, by the calling code of ``wa_id`` (what Meta bills by) or else by
        the country of the BSUID ``user_id``; with the user's country when it is known."""
        country = country_of(user_id)
        if wa_id:
            market = self.market_of(wa_id)
            return None if market is None else (market, market.country() or country)
        if country is None:
            return None
        market = self.market_of_country(country)
        return None if market is None else (market, country)


def rate_for(endpoint: str, category: str) -> str | None:
    """The card's rate for a message of ``category`` sent through ``endpoint``; None when that
    endpoint does not send it (or is no endpoint of ``ENDPOINTS``)."""
    if endpoint not in ENDPOINTS:
        return None
    rates = ENDPOINTS[endpoint]
    return category if rates is None else rates.get(category)


def authentication_rate(
    *,
    country_has_rate: bool,
    recipient_country: str | None,
    business: AuthInternational | None,
    delivered_at: int,
) -> str | None:
    """The rate Meta bills a delivered authentication template: ``authentication_international``
    when all of Meta's conditions hold, ``authentication`` when one fails, ``None`` when it turns
    on something not known.

    Meta ("Authentication-international rates", updated 21 May 2026): a message to a user whose
    country calling code is for a country with an authentication-international rate is billed
    that rate if the business is eligible, the business is based in another country (its
    primary business location), and the message was delivered on or after the business's start
    time for that country. ``business`` is None for a business not eligible.
    """
    if not country_has_rate or business is None:
        return AUTHENTICATION
    if business.start_time is None and not business.exception_countries:
        return AUTHENTICATION  # no start time announced: not eligible
    if recipient_country is None:
        return None  # neither the start time nor "another country" can be told
    start = business.start_for(recipient_country)
    if start is None or delivered_at < start:
        return AUTHENTICATION
    if business.primary_business_location is None:
        return None
    if business.primary_business_location == recipient_country:
        return AUTHENTICATION
    return AUTHENTICATION_INTERNATIONAL


def load_rate_cards(path: str | None) -> tuple[RateCard, ...]:
    """The cards in ``path``, oldest first; none without a file. A malformed file stops start-up
    with one line naming the setting."""
    if not path:
        return ()
    try:
        doc: Any = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=Decimal)
        if not isinstance(doc, dict) or not isinstance(doc.get("cards"), list):
            raise ValueError('it must be a JSON object with a list of "cards"')
        wabas = {str(k): _waba(str(k), v) for k, v in dict(doc.get("wabas", {})).items()}
        cards = tuple(sorted((_card(c, wabas) for c in doc["cards"]), key=lambda c: c.since))
        if len({c.since for c in cards}) != len(cards):
            raise ValueError("two cards share a 'since' date")
        return cards
    except OSError as exc:
        raise ConfigError(f"WAWINDOW_RATE_CARD_FILE: cannot read {path}: {exc.strerror}") from None
    except KeyError as exc:
        raise ConfigError(f"WAWINDOW_RATE_CARD_FILE: cannot use {path}: no {exc} field") from None
    except (TypeError, AttributeError) as exc:
        raise ConfigError(
            f"WAWINDOW_RATE_CARD_FILE: cannot use {path}: not the shape of a rate card ({exc})"
        ) from None
    except (ValueError, InvalidOperation) as exc:
        raise ConfigError(f"WAWINDOW_RATE_CARD_FILE: cannot use {path}: {exc}") from None


def _card(raw: dict[str, Any], wabas: Mapping[str, AuthInternational]) -> RateCard:
    currency = str(raw["currency"])
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code such as USD")
    markets = []
    placed: set[str] = set()
    for m in raw["markets"]:
        rates = {}
        for category, price in m["rates"].items():
            if category not in CATEGORIES:
                raise ValueError(f"unknown pricing category {category!r}")
            amount = Decimal(str(price))
            if amount < 0:
                raise ValueError(f"negative rate for {category!r} in {m['market']!r}")
            rates[category] = amount
        codes = tuple(str(c) for c in m["calling_codes"])
        if not codes or not all(c == ANY_MARKET or c.isdigit() for c in codes):
            raise ValueError(f"calling codes of {m['market']!r} must be digits or '*'")
        countries = tuple(str(c) for c in m.get("countries", ()))
        for country in countries:
            if country != ANY_MARKET and not _COUNTRY.fullmatch(country):
                raise ValueError(
                    f"country {country!r} of {m['market']!r} is not an ISO 3166 alpha-2 code"
                    " such as US, nor '*'"
                )
            if country in placed:
                raise ValueError(f"country {country!r} is in two markets")
            placed.add(country)
        markets.append(Market(str(m["market"]), codes, rates, countries))
    return RateCard(date.fromisoformat(raw["since"]), currency, tuple(markets), wabas)


def _waba(waba_id: str, raw: dict[str, Any]) -> AuthInternational:
    where = f"wabas.{waba_id}"
    if not waba_id.isdigit():
        raise ValueError(f"{where}: a WABA ID is digits")
    location = raw.get("primary_business_location")
    if location is not None and not _COUNTRY.fullmatch(str(location)):
        raise ValueError(f"{where}.primary_business_location {location!r} is not like US")
    eligibility = dict(raw.get("auth_international_rate_eligibility") or {})
    start = eligibility.get("start_time")
    exceptions = {}
    for item in eligibility.get("exception_countries", ()):
        country = str(item["country_code"])
        if not _COUNTRY.fullmatch(country):
            raise ValueError(f"{where}: exception country {country!r} is not like ID")
        exceptions[country] = _unix(item["start_time"], where)
    return AuthInternational(
        None if location is None else str(location),
        None if start is None else _unix(start, where),
        exceptions,
    )


def _unix(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: start_time {value!r} is not Unix seconds, as Meta sends it")
    return value


def estimate(
    cards: tuple[RateCard, ...],
    wa_id: str | None,
    category: str,
    billable: bool,
    at: int,
    *,
    user_id: str | None = None,
    waba_id: str | None = None,
) -> dict[str, Any] | None:
    """``{"amount", "currency", "market", "rate", "rate_card_since"}`` for one message sent at
    ``at``; ``None`` without a card for that date, a ``wa_id`` or BSUID to place the user, or a
    known rate. ``rate`` names the card's rate used (``authentication`` may become
    ``authentication_international``), ``None`` for a message that is not billable."""
    day = datetime.fromtimestamp(at, UTC).date()
    current = [c for c in cards if c.since <= day]
    if not current:
        return None
    card = current[-1]
    placed = card.place(wa_id, user_id)
    if placed is None:
        return None
    market, country = placed
    rate_name: str | None = None
    amount = "0"
    if billable:
        rate_name = category
        if category == AUTHENTICATION:
            has_rate = AUTHENTICATION_INTERNATIONAL in market.rates
            if has_rate and waba_id is None and card.wabas:
                return None  # which business sends decides it, and it is not known
            rate_name = authentication_rate(
                country_has_rate=has_rate,
                recipient_country=country,
                business=card.wabas.get(waba_id or ""),
                delivered_at=at,
            )
        rate = None if rate_name is None else market.rates.get(rate_name)
        if rate is None:
            return None
        amount = format(rate, "f")  # fixed point, never 2.5E-7
    return {
        "amount": amount,
        "currency": card.currency,
        "market": market.name,
        "rate": rate_name,
        "rate_card_since": card.since.isoformat(),
    }
