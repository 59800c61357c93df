"""The dated pricing rules behind a sender's estimate: pure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from wawindow.errors import ConfigError
from wawindow.finance.pricing import BUILT_IN, expected_charge, load_rules


def at(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) + 3600


@pytest.mark.parametrize(
    ("day", "kind", "in_window", "model", "ptype"),
    [
        ("2025-06-30", "template:marketing", False, "CBP", "regular"),
        ("2025-07-01", "template:utility", True, "PMP", "free_customer_service"),
        ("2025-07-01", "free_form", True, "PMP", "free_customer_service"),
        ("2025-07-01", "template:utility", False, "PMP", "regular"),
        ("2025-07-01", "template:marketing", True, "PMP", "regular"),
        ("2026-09-30", "free_form", True, "PMP", "free_customer_service"),
        ("2026-10-01", "free_form", True, "PMP", "regular"),
        ("2026-10-01", "template:utility", True, "PMP", "regular"),
    ],
)
def test_the_rule_in_force_on_the_day_decides(
    day: str, kind: str, in_window: bool, model: str, ptype: str
) -> None:
    charge = expected_charge(
        BUILT_IN, kind, at(day), service_window_open=in_window, entry_point_open=False
    )

    assert (charge["pricing_model"], charge["pricing_type"]) == (model, ptype)
    assert charge["billable"] == (ptype == "regular")


def test_inside_a_free_entry_point_everything_is_free() -> None:
    charge = expected_charge(
        BUILT_IN,
        "template:marketing",
        at("2026-11-29"),
        service_window_open=False,
        entry_point_open=True,
    )

    assert (charge["pricing_type"], charge["billable"], charge["pricing_category"]) == (
        "free_entry_point",
        False,
        "marketing",
    )


def test_an_operator_adds_rules_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        '[{"since": "2027-01-01", "pricing_model": "PMP", "free_in_service_window": ["free_form"]}]'
    )

    rules = load_rules(str(path))

    charge = expected_charge(
        rules, "free_form", at("2027-02-01"), service_window_open=True, entry_point_open=False
    )
    assert charge["pricing_type"] == "free_customer_service"
    before = expected_charge(
        rules, "free_form", at("2026-12-01"), service_window_open=True, entry_point_open=False
    )
    assert before["pricing_type"] == "regular"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '[{"since": "soon", "pricing_model": "PMP"}]',
        '[{"since": "2027-01-01", "pricing_model": "PMP", "free_in_service_window": ["fax"]}]',
    ],
)
def test_a_bad_rules_file_stops_start_up_naming_the_setting(tmp_path: Path, content: str) -> None:
    path = tmp_path / "rules.json"
    path.write_text(content)

    with pytest.raises(ConfigError, match="WAWINDOW_PRICING_RULES_FILE"):
        load_rules(str(path))
