"""Finance's counts: the 15-minute UTC counters regrouped into periods of any time zone.

Fifteen minutes divides every real UTC offset (+5:30, +5:45, -9:30 …), so a half hour, hour,
day or month of local time is always a whole number of stored quarter hours, across DST
changes too (a 23- or a 25-hour day is 92 or 100 quarters).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from wawindow import keys
from wawindow.contracts import DAY, CounterField
from wawindow.errors import BadParameter
from wawindow.redis.connection import AnyRedis, text


@dataclass(frozen=True, slots=True)
class CounterRow:
    """One stored finance counter: a quarter hour of one UTC day, one number, one metric."""

    day: int  # days since 1970-01-01, UTC
    quarter: int  # 0-95 within the day
    waba_id: str
    phone_number_id: str
    metric: str
    dimensions: tuple[str, ...]
    count: int

    @property
    def start(self) -> int:
        """The quarter hour's start, Unix seconds."""
        return self.day * DAY + self.quarter * 900


async def read_counters(redis: AnyRedis, first_day: int, last_day: int) -> list[CounterRow]:
    """Every counter of the UTC days ``first_day`` to ``last_day`` (inclusive), all shards."""
    pipe = redis.pipeline(transaction=False)
    days = range(first_day, last_day + 1)
    for day in days:
        for shard in range(keys.SHARDS):
            pipe.hgetall(keys.counters(shard, str(day)))
    results = await pipe.execute()
    rows = []
    for i, fields in enumerate(results):
        day = days[i // keys.SHARDS]
        for raw_field, raw_count in fields.items():
            count = int(raw_count)
            if count == 0:
                continue
            f = CounterField.decode(day, text(raw_field))
            rows.append(
                CounterRow(
                    f.day, f.quarter, f.waba_id, f.phone_number_id, f.metric, f.dimensions, count
                )
            )
    return rows


GRANULARITIES = ("half_hour", "hour", "day", "month")
DIMENSIONS = {
    "conversations_opened": ("category", "initiator", "type", "source"),
    "messages_delivered": ("pricing_category", "pricing_type", "billable"),
}


@dataclass(frozen=True, slots=True)
class CountsQuery:
    start: int  # Unix seconds, inclusive
    end: int  # Unix seconds, exclusive
    tz: ZoneInfo
    granularity: str
    waba_ids: Collection[str] | None = None  # None: every WABA
    phone_number_id: str | None = None


def period_start(ts: int, tz: ZoneInfo, granularity: str) -> datetime:
    """The start, in ``tz``, of the period holding the instant ``ts``."""
    local = datetime.fromtimestamp(ts, tz)
    if granularity == "half_hour":
        return local.replace(minute=local.minute // 30 * 30, second=0, microsecond=0)
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return datetime(local.year, local.month, 1 if granularity == "month" else local.day, tzinfo=tz)


async def counts(redis: AnyRedis, query: CountsQuery) -> list[dict[str, Any]]:
    """Rows ``{period_start, waba_id, phone_number_id, metric, <dimensions>, count}``, sorted."""
    totals: dict[tuple[Any, ...], int] = {}
    starts: dict[tuple[Any, ...], datetime] = {}
    for stored in await read_counters(redis, query.start // DAY, (query.end - 1) // DAY):
        if not query.start <= stored.start < query.end:
            continue
        if query.waba_ids is not None and stored.waba_id not in query.waba_ids:
            continue
        if query.phone_number_id and stored.phone_number_id != query.phone_number_id:
            continue
        period = period_start(stored.start, query.tz, query.granularity)
        key = (
            period.isoformat(),
            stored.waba_id,
            stored.phone_number_id,
            stored.metric,
            stored.dimensions,
        )
        totals[key] = totals.get(key, 0) + stored.count
        starts[key] = period
    rows = []
    for key in sorted(totals, key=lambda k: (starts[k], *k[1:4], k[4])):
        label, waba, number, metric, dims = key
        if totals[key] == 0:
            continue
        row: dict[str, Any] = {
            "period_start": label,
            "waba_id": waba,
            "phone_number_id": number,
            "metric": metric,
        }
        for name, value in zip(DIMENSIONS.get(metric, ()), dims, strict=False):
            row[name] = (
                {"true": True, "false": False}.get(value, value) if name == "billable" else value
            )
        row["count"] = totals[key]
        rows.append(row)
    return rows


def meta_data_points(
    rows: list[dict[str, Any]], tz: ZoneInfo, granularity: str
) -> list[dict[str, Any]]:
    """``messages_delivered`` rows in the shape of Meta's ``pricing_analytics`` data points."""
    points = []
    for row in rows:
        if row["metric"] != "messages_delivered":
            continue
        start = datetime.fromisoformat(row["period_start"])
        points.append(
            {
                "start": int(start.timestamp()),
                "end": int(_next_period(start, tz, granularity).timestamp()),
                "phone_number": row["phone_number_id"],
                "pricing_category": str(row["pricing_category"]).upper().replace("-", "_"),
                "pricing_type": str(row["pricing_type"]).upper(),
                "volume": row["count"],
            }
        )
    return points


def _next_period(start: datetime, tz: ZoneInfo, granularity: str) -> datetime:
    if granularity in ("half_hour", "hour"):
        step = 1800 if granularity == "half_hour" else 3600
        return datetime.fromtimestamp(start.timestamp() + step, tz)
    if granularity == "day":
        probe = datetime.fromtimestamp(start.timestamp() + 26 * 3600, tz)
        return datetime(probe.year, probe.month, probe.day, tzinfo=tz)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return datetime(year, month, 1, tzinfo=tz)


# -- parameters, shared by the API and the CLI ------------------------------------------------

MAX_RANGE_DAYS = 400
CSV_COLUMNS = (
    "period_start", "waba_id", "phone_number_id", "metric",
    *DIMENSIONS["conversations_opened"], *DIMENSIONS["messages_delivered"], "count",
)  # fmt: skip


def parse_instant(name: str, raw: str | None, tz: ZoneInfo) -> int:
    """A date (midnight in ``tz``) or an ISO 8601 instant (a time without offset is in ``tz``)."""
    if not raw:
        raise BadParameter(name, "is required (a date like 2026-11-01 or an ISO 8601 instant)")
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(name, f"{raw!r} is neither a date nor an ISO 8601 instant") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp())
