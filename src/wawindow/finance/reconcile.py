"""Reconciliation: the tracker's counters beside a saved ``pricing_analytics`` or
``conversation_analytics`` response from Meta's Graph API.

Meta's data points carry their own ``start``/``end`` instants, so the tracker's quarter-hour
counters are summed over exactly those intervals: no time zone has to be guessed. Dimensions the
response lacks (no ``PHONE``, no ``PRICING_TYPE`` …) are summed over on the tracker's side too.

Meta's analytics and the tracker's counters (which keep the status webhooks' spellings) do not
always name the same messages alike; ``SPELLINGS`` below is the one table that makes both sides
meet, and ``compared_as`` the one function that applies it, to Meta's points and to the
tracker's counters alike.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from wawindow.contracts import DAY, text
from wawindow.errors import AnalyticsError
from wawindow.finance.counts import CounterRow

ANY = "*"  # a dimension the response does not break down by
KINDS = {
    # kind: (tracker metric, Meta's value field, category field, type field)
    "pricing_analytics": ("messages_delivered", "volume", "pricing_category", "pricing_type"),
    "conversation_analytics": (
        "conversations_opened",
        "conversation",
        "conversation_category",
        "conversation_type",
    ),
}
# How the two sides' spellings meet. Both sides are upper-cased, then pass through this table:
# first the row for (their category, ANY), then the row for (ANY, their type); a row gives the
# (category, type) compared, ANY keeping what was written. Anything not in the table is compared
# as written, upper-cased (MARKETING_LITE, group and future categories included).
SPELLINGS: dict[tuple[str, str], tuple[str, str]] = {
    # status webhooks (so the tracker's counters) spell the pricing category with a hyphen,
    # analytics with an underscore
    ("AUTHENTICATION-INTERNATIONAL", ANY): ("AUTHENTICATION_INTERNATIONAL", ANY),
    # conversation_analytics' filter calls the free entry point type FREE_ENTRY, its answers
    # FREE_ENTRY_POINT
    (ANY, "FREE_ENTRY"): ("REFERRAL_CONVERSION", "FREE_ENTRY_POINT"),
    # free entry point volume: Meta reports it sometimes as REFERRAL_CONVERSION, sometimes as
    # SERVICE; compared under REFERRAL_CONVERSION whenever the type says free entry point
    (ANY, "FREE_ENTRY_POINT"): ("REFERRAL_CONVERSION", ANY),
    # messages not charged in a customer service window: Meta's analytics group them all under
    # SERVICE, the tracker keeps the message's own category (an in-window utility template is
    # utility / free_customer_service)
    (ANY, "FREE_CUSTOMER_SERVICE"): ("SERVICE", ANY),
}


def compared_as(category: str | None, kind: str | None) -> tuple[str, str]:
    """The (category, type) under which a count is compared, whichever side wrote it."""
    category, kind = (category or "").upper(), (kind or "").upper()
    for by_type in (False, True):
        rule = SPELLINGS.get((ANY, kind) if by_type else (category, ANY))
        if rule is not None:
            category = category if rule[0] == ANY else rule[0]
            kind = kind if rule[1] == ANY else rule[1]
    return category, kind


@dataclass(frozen=True, slots=True)
class Analytics:
    kind: str
    waba_id: str | None
    points: list[dict[str, Any]]
    by_number: bool
    by_category: bool
    by_type: bool


@dataclass(frozen=True, slots=True)
class DriftRow:
    day: str
    phone_number_id: str
    category: str
    type: str
    meta: int
    tracker: int

    @property
    def drift(self) -> int:
        return self.tracker - self.meta

    def percent(self) -> float | None:
        """Drift as a percentage of Meta's figure; ``None`` when Meta counted nothing."""
        return None if self.meta == 0 else 100.0 * self.drift / self.meta

    def beyond(self, threshold_percent: float) -> bool:
        if self.drift == 0:
            return False
        share = self.percent()
        return share is None or abs(share) > threshold_percent

    def as_dict(self) -> dict[str, Any]:
        share = self.percent()
        return {
            "day": self.day,
            "phone_number_id": self.phone_number_id,
            "category": self.category,
            "type": self.type,
            "meta": self.meta,
            "tracker": self.tracker,
            "drift": self.drift,
            "drift_percent": None if share is None else round(share, 2),
        }


def parse_analytics(doc: Any) -> Analytics:
    """A saved Graph API response: ``{"pricing_analytics": {"data": [{"data_points": …}]}}``."""
    if not isinstance(doc, dict):
        raise AnalyticsError("expected a JSON object saved from the Graph API")
    kinds = [k for k in KINDS if k in doc]
    if len(kinds) != 1:
        raise AnalyticsError(
            "expected exactly one of 'pricing_analytics', 'conversation_analytics'"
        )
    kind = kinds[0]
    _, value_field, category_field, type_field = KINDS[kind]
    section = doc[kind]
    data = section.get("data") if isinstance(section, dict) else None
    if not isinstance(data, list):
        raise AnalyticsError(f"{kind}.data is missing or not a list")
    points: list[dict[str, Any]] = []
    for i, block in enumerate(data):
        raw_points = block.get("data_points") if isinstance(block, dict) else None
        if not isinstance(raw_points, list):
            raise AnalyticsError(f"{kind}.data[{i}].data_points is missing or not a list")
        for j, point in enumerate(raw_points):
            where = f"{kind}.data[{i}].data_points[{j}]"
            if not isinstance(point, dict):
                raise AnalyticsError(f"{where} is not an object")
            try:
                start, end = int(point["start"]), int(point["end"])
                value = int(point.get(value_field, 0))
            except (KeyError, TypeError, ValueError):
                raise AnalyticsError(
                    f"{where} needs integer start, end and {value_field}"
                ) from None
            if end <= start:
                raise AnalyticsError(f"{where} ends before it starts")
            points.append(
                {
                    "start": start,
                    "end": end,
                    "number": text(point.get("phone_number")),
                    "category": text(point.get(category_field)),
                    "type": text(point.get(type_field)),
                    "value": value,
                }
            )
    waba = doc.get("id")
    return Analytics(
        kind=kind,
        waba_id=str(waba) if waba is not None else None,
        points=points,
        by_number=any(p["number"] is not None for p in points),
        by_category=any(p["category"] is not None for p in points),
        by_type=any(p["type"] is not None for p in points),
    )


def reconcile(
    analytics: Analytics,
    counters: Iterable[CounterRow],
    tz: ZoneInfo,
    numbers: Mapping[str, str] | None = None,
) -> list[DriftRow]:
    """Drift per day (of ``tz``), phone number, category and type, both sides summed.

    ``numbers`` maps Meta's ``phone_number`` (the display number) to a ``phone_number_id``;
    a number missing from it is taken to be a ``phone_number_id`` already.
    """
    # display numbers compared by their digits: "+1 555-078-3881" is "15550783881"
    by_digits = {_digits(display): number_id for display, number_id in (numbers or {}).items()}
    metric = KINDS[analytics.kind][0]
    intervals = sorted({(p["start"], p["end"]) for p in analytics.points})
    starts = [s for s, _ in intervals]
    meta: dict[tuple[str, str, str, str], int] = {}
    tracker: dict[tuple[str, str, str, str], int] = {}

    def key(start: int, number: str | None, category: str | None, kind: str | None) -> Any:
        day = datetime.fromtimestamp(start, tz).date().isoformat()
        category, kind = compared_as(category, kind)
        return (
            day,
            by_digits.get(_digits(number or ""), number or "") if analytics.by_number else ANY,
            category if analytics.by_category else ANY,
            kind if analytics.by_type else ANY,
        )

    for p in analytics.points:
        k = key(p["start"], p["number"], p["category"], p["type"])
        meta[k] = meta.get(k, 0) + p["value"]
    for row in counters:
        if row.metric != metric:
            continue
        if analytics.waba_id is not None and row.waba_id != analytics.waba_id:
            continue
        i = bisect.bisect_right(starts, row.start) - 1
        if i < 0 or not intervals[i][0] <= row.start < intervals[i][1]:
            continue
        if metric == "messages_delivered":
            category, kind = row.dimensions[0], row.dimensions[1]
        else:
            category, kind = row.dimensions[0], row.dimensions[2]
        k = key(intervals[i][0], row.phone_number_id, category, kind)
        tracker[k] = tracker.get(k, 0) + row.count
    return [
        DriftRow(*k, meta=meta.get(k, 0), tracker=tracker.get(k, 0))
        for k in sorted(meta.keys() | tracker.keys())
    ]


def day_span(analytics: Analytics) -> tuple[int, int]:
    """The first and last UTC day (days since 1970) the response's intervals touch."""
    if not analytics.points:
        return (0, -1)
    first = min(p["start"] for p in analytics.points)
    last = max(p["end"] for p in analytics.points) - 1
    return first // DAY, last // DAY


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())
