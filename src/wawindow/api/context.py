"""What the API's handlers share: its configuration, who is calling, and the stores."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from wawindow.config import ApiToken, Settings
from wawindow.engine.people import People
from wawindow.engine.store import WindowStore
from wawindow.finance.pricing import PricingRule, load_rules
from wawindow.finance.ratecard import RateCard, load_rate_cards
from wawindow.kafka.consent_records import Categories
from wawindow.keys import Topics


@dataclass(frozen=True, slots=True)
class ApiConfig:
    tokens: tuple[ApiToken, ...]
    rules: tuple[PricingRule, ...]
    rate_cards: tuple[RateCard, ...] = ()
    consent_policy: str = "off"
    categories: Categories = field(default_factory=Categories)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiConfig:
        settings.require("api_tokens")
        return cls(
            settings.api_tokens,
            load_rules(settings.pricing_rules_file),
            load_rate_cards(settings.rate_card_file),
            settings.consent_policy,
            Categories(settings.consent_categories),
        )


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the WABAs their token may see (None: every WABA), whether it may
    write, and how writes name it (a digest of the token, never the token)."""

    wabas: frozenset[str] | None
    write: bool = False
    digest: str = ""


API = web.AppKey("api", ApiConfig)
CALLER = web.RequestKey("caller", Caller)
PEOPLE = web.AppKey("people", People)
STORE = web.AppKey("store", WindowStore)
TOPICS = web.AppKey("topics", Topics)
