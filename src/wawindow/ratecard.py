"""The operator's rate card: list prices per market and pricing category, so that
``/v1/send-check`` can say what a message is expected to cost in money, not only its category.

Meta's webhooks carry no amounts and its rates change by date and market, so the prices come
from a JSON file the operator keeps (``WAWINDOW_RATE_CARD_FILE``)::

    {"cards": [
      {"since": "2026-10-01", "currency": "USD",
       "markets": [
         {"market": "North America", "calling_codes": ["1"],
          "rates": {"marketing": 0.025, "utility": 0.0034, "authentication": 0.0034,
                    "service": 0.0034}},
         {"market": "Rest of World", "calling_codes": ["*"],
          "rates": {"marketing": 0.0604, "utility": 0.0077}}]}]}

A user's market is the one whose calling code is the longest prefix of their ``wa_id``; ``*``
matches any number no other market claims. A card applies from 00:00 UTC of ``since`` until the
next card. These are list prices: Meta's volume tiers for utility and authentication, and the
authentication-international rate, are not modelled, so finance's truth stays Meta's invoice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from wawindow.errors import ConfigError

CATEGORIES = frozenset({"marketing", "utility", "authentication", "service"})
ANY_MARKET = "*"


@dataclass(frozen=True, slots=True)
class Market:
    name: str
    calling_codes: tuple[str, ...]
    rates: dict[str, Decimal]


@dataclass(frozen=True, slots=True)
class RateCard:
    since: date
    currency: str
    markets: tuple[Market, ...]

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


def load_rate_cards(path: str | None) -> tuple[RateCard, ...]:
    """The cards in ``path``, oldest first; none without a file. A malformed file stops start-up
    with one line naming the setting."""
    if not path:
        return ()
    try:
        doc: Any = json.loads(Path(path).read_text(encoding="utf-8"), parse_float=Decimal)
        cards = tuple(sorted((_card(c) for c in doc["cards"]), key=lambda c: c.since))
        if len({c.since for c in cards}) != len(cards):
            raise ValueError("two cards share a 'since' date")
        return cards
    except (OSError, ValueError, KeyError, TypeError, InvalidOperation) as exc:
        raise ConfigError(f"WAWINDOW_RATE_CARD_FILE: cannot use {path}: {exc}") from None


def _card(raw: dict[str, Any]) -> RateCard:
    currency = str(raw["currency"])
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code such as USD")
    markets = []
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
        markets.append(Market(str(m["market"]), codes, rates))
    return RateCard(date.fromisoformat(raw["since"]), currency, tuple(markets))


def estimate(
    cards: tuple[RateCard, ...], wa_id: str | None, category: str, billable: bool, at: int
) -> dict[str, Any] | None:
    """``{"amount", "currency", "market", "rate_card_since"}`` for one message sent at ``at``;
    ``None`` without a card for that date, a ``wa_id`` to place the user, or a known rate."""
    day = datetime.fromtimestamp(at, UTC).date()
    current = [c for c in cards if c.since <= day]
    if not current or not wa_id:
        return None
    card = current[-1]
    market = card.market_of(wa_id)
    if market is None:
        return None
    if billable:
        rate = market.rates.get(category)
        if rate is None:
            return None
        amount = format(rate, "f")  # fixed point, never 2.5E-7
    else:
        amount = "0"
    return {
        "amount": amount,
        "currency": card.currency,
        "market": market.name,
        "rate_card_since": card.since.isoformat(),
    }
