"""``wawindow reconcile``: the tracker's counts beside a saved Meta analytics response."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Services
from tests.engine_harness import Scenario
from tests.test_engine_views import _env, run_cli
from wawindow.contracts import DAY
from wawindow.dev import samples
from wawindow.errors import AnalyticsError
from wawindow.finance.counts import CounterRow
from wawindow.finance.reconcile import compared_as, parse_analytics, reconcile

FIXTURE = Path(__file__).parent / "fixtures" / "pricing_analytics_drift.json"
SPELLINGS = Path(__file__).parent / "fixtures" / "pricing_analytics_spellings.json"
DAY1 = 1795680000  # 2026-11-26T08:00Z, midnight in Los Angeles
DAY2 = DAY1 + DAY
LA = ZoneInfo("America/Los_Angeles")
WABA, PN = samples.WABA_ID, samples.PHONE_NUMBER_ID


def counter(at: int, metric: str, *dims: str, count: int = 1, number: str = PN) -> CounterRow:
    return CounterRow(at // DAY, at % DAY // 900, WABA, number, metric, dims, count)


def delivered(at: int, category: str, kind: str, count: int = 1) -> CounterRow:
    billable = "true" if kind == "regular" else "false"
    return counter(at, "messages_delivered", category, kind, billable, count=count)


# -- pure logic -----------------------------------------------------------------------------


def test_drift_per_day_category_type_and_number_with_countries_summed() -> None:
    analytics = parse_analytics(json.loads(FIXTURE.read_text()))
    rows = reconcile(
        analytics,
        [
            delivered(DAY1 + 3600, "marketing", "regular", 3),
            delivered(DAY1 + 7200, "utility", "regular"),
            delivered(DAY2 + 60, "service", "free_customer_service", 2),
            delivered(DAY2 + 120, "referral_conversion", "free_entry_point"),
            delivered(DAY2 + DAY + 60, "marketing", "regular", 9),  # after the response's span
            counter(DAY1 + 60, "inbound_messages", count=5),  # another metric
        ],
        LA,
        {"+1 555-078-3881": PN},  # however the display number is written
    )

    table = {(r.day, r.category, r.type): (r.meta, r.tracker) for r in rows}
    assert table == {
        ("2026-11-26", "MARKETING", "REGULAR"): (3, 3),
        ("2026-11-26", "UTILITY", "REGULAR"): (2, 1),
        ("2026-11-27", "SERVICE", "FREE_CUSTOMER_SERVICE"): (2, 2),
        ("2026-11-27", "REFERRAL_CONVERSION", "FREE_ENTRY_POINT"): (1, 1),
        ("2026-11-27", "MARKETING", "REGULAR"): (1, 0),
    }
    assert {r.phone_number_id for r in rows} == {PN}
    utility = next(r for r in rows if r.category == "UTILITY")
    assert (utility.drift, utility.percent()) == (-1, -50.0)
    assert utility.beyond(49.9)
    assert not utility.beyond(50.0)


def test_metas_spellings_meet_the_trackers_so_matching_volumes_show_no_drift() -> None:
    # Meta: AUTHENTICATION_INTERNATIONAL, and everything not charged under SERVICE with
    # FREE_CUSTOMER_SERVICE; the tracker: the status webhooks' authentication-international, and
    # a utility template inside the window as utility / free_customer_service
    analytics = parse_analytics(json.loads(SPELLINGS.read_text()))
    rows = reconcile(
        analytics,
        [
            delivered(DAY1 + 60, "authentication-international", "regular", 3),
            delivered(DAY1 + 120, "authentication", "regular"),
            delivered(DAY1 + 180, "utility", "free_customer_service", 3),
            delivered(DAY1 + 240, "service", "free_customer_service", 2),
            delivered(DAY1 + 300, "marketing_lite", "regular", 2),
        ],
        LA,
        {samples.DISPLAY_NUMBER: PN},
    )

    table = {(r.day, r.category, r.type): (r.meta, r.tracker) for r in rows}
    assert table == {
        ("2026-11-26", "AUTHENTICATION_INTERNATIONAL", "REGULAR"): (3, 3),
        ("2026-11-26", "AUTHENTICATION", "REGULAR"): (1, 1),
        ("2026-11-26", "SERVICE", "FREE_CUSTOMER_SERVICE"): (5, 5),
        ("2026-11-26", "MARKETING_LITE", "REGULAR"): (2, 2),
    }
    assert [r for r in rows if r.beyond(0)] == []


@pytest.mark.parametrize(
    ("written", "compared"),
    [
        (("authentication-international", "regular"), ("AUTHENTICATION_INTERNATIONAL", "REGULAR")),
        (("AUTHENTICATION_INTERNATIONAL", "REGULAR"), ("AUTHENTICATION_INTERNATIONAL", "REGULAR")),
        (("utility", "free_customer_service"), ("SERVICE", "FREE_CUSTOMER_SERVICE")),
        (("SERVICE", "FREE_CUSTOMER_SERVICE"), ("SERVICE", "FREE_CUSTOMER_SERVICE")),
        (("utility", "regular"), ("UTILITY", "REGULAR")),  # charged utility stays utility
        (("SERVICE", "FREE_ENTRY_POINT"), ("REFERRAL_CONVERSION", "FREE_ENTRY_POINT")),
        (("SERVICE", "FREE_ENTRY"), ("REFERRAL_CONVERSION", "FREE_ENTRY_POINT")),
        (("marketing_lite", "regular"), ("MARKETING_LITE", "REGULAR")),
        (("group_utility", "free_group_customer_service"),
         ("GROUP_UTILITY", "FREE_GROUP_CUSTOMER_SERVICE")),  # not in the table: as written
        (("UTILITY", None), ("UTILITY", "")),
    ],
)  # fmt: skip
def test_one_table_says_how_each_spelling_is_compared(
    written: tuple[str, str | None], compared: tuple[str, str]
) -> None:
    assert compared_as(*written) == compared


def test_in_window_utility_counts_as_service_also_when_meta_gives_no_pricing_type() -> None:
    analytics = parse_analytics(
        {
            "pricing_analytics": {
                "data": [
                    {
                        "data_points": [
                            {"start": DAY1, "end": DAY2, "pricing_category": "SERVICE",
                             "volume": 5},
                            {"start": DAY1, "end": DAY2, "pricing_category": "UTILITY",
                             "volume": 1},
                        ]
                    }
                ]
            }
        }
    )  # fmt: skip
    rows = reconcile(
        analytics,
        [
            delivered(DAY1 + 60, "utility", "free_customer_service", 3),
            delivered(DAY1 + 90, "service", "free_customer_service", 2),
            delivered(DAY1 + 120, "utility", "regular"),  # charged: stays utility
        ],
        LA,
    )

    assert [(r.category, r.type, r.meta, r.tracker) for r in rows] == [
        ("SERVICE", "*", 5, 5),
        ("UTILITY", "*", 1, 1),
    ]


def test_missing_dimensions_are_summed_on_the_trackers_side_too() -> None:
    analytics = parse_analytics(
        {
            "conversation_analytics": {
                "data": [{"data_points": [{"start": DAY1, "end": DAY2, "conversation": 4}]}]
            }
        }
    )
    rows = reconcile(
        analytics,
        [
            counter(DAY1 + 60, "conversations_opened", "service", "user", "regular", "derived"),
            counter(DAY1 + 90, "conversations_opened", "marketing", "business", "regular", "meta"),
            counter(
                DAY1 + 99,
                "conversations_opened",
                "utility",
                "business",
                "regular",
                "meta",
                number="other",
            ),
        ],
        LA,
    )

    assert [(r.phone_number_id, r.category, r.type, r.meta, r.tracker) for r in rows] == [
        ("*", "*", "*", 4, 3)
    ]


def test_a_tracker_count_for_another_waba_is_not_compared() -> None:
    analytics = parse_analytics(json.loads(FIXTURE.read_text()))
    stranger = CounterRow(
        DAY1 // DAY, DAY1 % DAY // 900, "999", PN, "messages_delivered",
        ("utility", "regular", "true"), 7,
    )  # fmt: skip

    rows = reconcile(analytics, [stranger], LA, {samples.DISPLAY_NUMBER: PN})

    assert all(r.tracker == 0 for r in rows)


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ([], "JSON object"),
        ({"analytics": {}}, "exactly one"),
        ({"pricing_analytics": {"data": {}}}, "pricing_analytics.data"),
        ({"pricing_analytics": {"data": [{"data_points": [{"start": 1}]}]}}, "data_points[0]"),
        (
            {"pricing_analytics": {"data": [{"data_points": [{"start": 9, "end": 9}]}]}},
            "ends before",
        ),
    ],
)
def test_a_file_that_is_no_analytics_response_says_why(doc: object, says: str) -> None:
    with pytest.raises(AnalyticsError, match=says.replace("[", r"\[").replace("]", r"\]")):
        parse_analytics(doc)


# -- the command, against real Kafka and Redis ---------------------------------------------


async def test_reconcile_prints_the_drift_and_exits_non_zero_beyond_the_threshold(
    s: Scenario, services: Services, tmp_path: Path
) -> None:
    pricing = samples.pmp_pricing
    for i in range(3):
        await s.status(f"wamid.m{i}", "delivered", DAY1 + 3600 + i, pricing=pricing("marketing"))
    await s.status("wamid.u0", "delivered", DAY1 + 7200, pricing=pricing("utility"))
    for i in range(2):
        await s.status(
            f"wamid.s{i}", "delivered", DAY2 + 60 + i,
            pricing=pricing("service", "free_customer_service"),
        )  # fmt: skip
    await s.status(
        "wamid.f0", "delivered", DAY2 + 120,
        pricing=pricing("referral_conversion", "free_entry_point"),
    )  # fmt: skip
    await s.status("wamid.m0", "delivered", DAY1 + 3600)  # Meta's re-send: counted once
    await s.process()
    env = _env(s, services)
    mapping = ("--number", f"{samples.DISPLAY_NUMBER}={PN}", "--tz", "America/Los_Angeles")
    args = ("reconcile", "--analytics", str(FIXTURE), *mapping)

    strict = await run_cli(*args, env=env)
    loose = await run_cli(*args, "--threshold", "60", "--format", "json", env=env)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    unreadable = await run_cli("reconcile", "--analytics", str(broken), env=env)

    assert strict[0] == 3, strict[2]
    lines = strict[1].splitlines()
    [utility] = [line for line in lines if "UTILITY" in line]
    assert utility.split()[4:8] == ["2", "1", "-1", "-50.00"]
    assert "<- beyond" in utility
    assert "5 rows from pricing_analytics; 2 drift beyond 0% of Meta's figure" in strict[1]
    assert loose[0] == 3
    beyond = [
        (r["day"], r["category"]) for r in json.loads(loose[1])["rows"] if r["beyond_threshold"]
    ]
    assert beyond == [("2026-11-27", "MARKETING")]
    assert unreadable[0] == 2
    assert "--analytics" in unreadable[2]
