"""The dated pricing rules a sender's estimate uses (never the ledger: billing truth is Meta's
``pricing`` object on statuses).

Built in, from Meta's announcements:

- until 30 Jun 2025: conversation-based pricing (CBP);
- from 1 Jul 2025: per message (PMP); non-template (service) messages and utility templates
  sent inside an open customer service window are free;
- from 1 Oct 2026: service messages and in-window utility templates are charged again.

Inside an open free entry point window everything is free. An operator adds rules from a JSON
file (``WAWINDOW_PRICING_RULES_FILE``) without a release, for example::

    [{"since": "2027-01-01", "pricing_model": "PMP", "free_in_service_window": ["free_form"]}]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from wawindow.errors import ConfigError

KINDS = ("free_form", "template:marketing", "template:utility", "template:authentication")


@dataclass(frozen=True, slots=True)
class PricingRule:
    since: date
    pricing_model: str
    free_in_service_window: frozenset[str]


BUILT_IN = (
    PricingRule(date(1970, 1, 1), "CBP", frozenset()),
    PricingRule(date(2025, 7, 1), "PMP", frozenset({"free_form", "template:utility"})),
    PricingRule(date(2026, 10, 1), "PMP", frozenset()),
)


def load_rules(path: str | None) -> tuple[PricingRule, ...]:
    """The built-in rules, plus (and overridden by, on the same date) those in ``path``."""
    rules = {r.since: r for r in BUILT_IN}
    if path:
        try:
            items: Any = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError("it must be a JSON list of rules (objects)")
            for item in items:
                kinds = frozenset(item.get("free_in_service_window", []))
                unknown = kinds - set(KINDS)
                if unknown:
                    raise ValueError(f"unknown kinds {sorted(unknown)}")
                since = date.fromisoformat(item["since"])
                rules[since] = PricingRule(since, str(item["pricing_model"]), kinds)
        except OSError as exc:
            raise ConfigError(
                f"WAWINDOW_PRICING_RULES_FILE: cannot read {path}: {exc.strerror}"
            ) from None
        except KeyError as exc:
            raise ConfigError(
                f"WAWINDOW_PRICING_RULES_FILE: cannot use {path}: a rule has no {exc} field"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"WAWINDOW_PRICING_RULES_FILE: cannot use {path}: {exc}") from None
    return tuple(sorted(rules.values(), key=lambda r: r.since))


def rule_at(rules: tuple[PricingRule, ...], at: int) -> PricingRule:
    day = datetime.fromtimestamp(at, UTC).date()
    current = rules[0]
    for rule in rules:
        if rule.since <= day:
            current = rule
    return current


def expected_charge(
    rules: tuple[PricingRule, ...],
    kind: str,
    at: int,
    *,
    service_window_open: bool,
    entry_point_open: bool,
) -> dict[str, Any]:
    """What a message of ``kind`` sent at ``at`` is expected to be charged as."""
    rule = rule_at(rules, at)
    category = "service" if kind == "free_form" else kind.removeprefix("template:")
    if entry_point_open:
        pricing_type = "free_entry_point"
    elif service_window_open and kind in rule.free_in_service_window:
        pricing_type = "free_customer_service"
    else:
        pricing_type = "regular"
    return {
        "pricing_model": rule.pricing_model,
        "pricing_category": category,
        "pricing_type": pricing_type,
        "billable": pricing_type == "regular",
    }
