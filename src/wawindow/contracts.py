"""The contracts other parts and other services rely on, in one place: event kinds, window
transition types, finance metrics and the layout of a stored counter.

The rules (:mod:`wawindow.rules`), the store, the AsyncAPI document (``docs/asyncapi.yaml``)
and the tests all draw these names from here; a test holds the document to this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DAY = 86_400
QUARTER = 900  # finance counters are kept per 15 minutes of Meta's time
#: the Unix seconds an event's timestamp may be (1970 to 2286); anything else is not a time
#: (and past year 9999 not even a date the CloudEvents can carry)
TIMESTAMPS = range(10_000_000_000)


def text(value: Any) -> str | None:
    """An id or an enum of a webhook (or of what was made of one) as text; None when it is
    missing, empty or not a scalar. Meta sends most as strings, some as numbers. The
    receiver calls this for every field it reads: keep it fast."""
    if type(value) is str:  # the common case
        return value or None
    if value is None or isinstance(value, dict | list | bool):
        return None
    out = str(value).strip()
    return out or None


class EventKind(StrEnum):
    """``kind`` of a record on ``webhook-events`` (see :mod:`wawindow.ingest.split`)."""

    MESSAGE = "message"
    STATUS = "status"
    USER_PREFERENCE = "user_preference"
    CALL = "call"
    ERROR = "error"
    CHANGE = "change"


class ChangeKind(StrEnum):
    """``kind`` of a record on ``consent-events`` (see :mod:`wawindow.kafka.consent_records`)."""

    CONSENT = "consent"
    ERASURE = "erasure"
    # what an erasure kept of the person's opt-outs (see wawindow.rules.suppression)
    SUPPRESSION = "suppression"


class Note(StrEnum):
    """What applying an event (or a consent change) found of it besides its facts: what it
    repeated or corrected; the worker counts each (see :mod:`wawindow.metrics`)."""

    DUPLICATE = "duplicate"  # applied before: Meta's re-send, a replay
    OUT_OF_ORDER = "out_of_order"  # older than what the state knew
    ERASED = "erased"  # of a time an erasure of the person covers: never applied
    CSW_CORRECTION = "csw_correction"  # Meta's 131047 closed a window thought open
    DISAGREEMENT = "disagreement"  # Meta's conversation id and the derivation disagree


#: the consent categories a person decides on when ``WAWINDOW_CONSENT_CATEGORIES`` names no
#: others (``all`` is always one besides; see :mod:`wawindow.rules.consent`)
DEFAULT_CONSENT_CATEGORIES = ("marketing", "utility", "authentication")

#: the kinds that belong to a conversation (the others are keyed by WABA and change no state)
CONVERSATION_KINDS = frozenset(
    {EventKind.MESSAGE, EventKind.STATUS, EventKind.USER_PREFERENCE, EventKind.CALL}
)


class TransitionType(StrEnum):
    """A window transition; published as ``wawindow.<value>`` on ``window-events``."""

    SERVICE_WINDOW_OPENED = "service_window.opened"
    SERVICE_WINDOW_EXTENDED = "service_window.extended"
    SERVICE_WINDOW_CLOSING_SOON = "service_window.closing_soon"
    SERVICE_WINDOW_CLOSED = "service_window.closed"
    SERVICE_WINDOW_RETRACTED = "service_window.retracted"
    ENTRY_POINT_WINDOW_OPENED = "entry_point_window.opened"
    ENTRY_POINT_WINDOW_CLOSED = "entry_point_window.closed"
    ENTRY_POINT_WINDOW_RETRACTED = "entry_point_window.retracted"
    CONVERSATION_OPENED = "conversation.opened"
    CONVERSATION_UPDATED = "conversation.updated"
    CONVERSATION_CLOSED = "conversation.closed"
    CONVERSATION_RETRACTED = "conversation.retracted"
    OPT_OUT_CHANGED = "opt_out.changed"
    # a person's, at WABA scope (see :mod:`wawindow.rules.people`)
    CONSENT_CHANGED = "consent.changed"
    USER_ERASED = "user.erased"

    @property
    def cloudevent_type(self) -> str:
        return f"wawindow.{self.value}"


class Metric(StrEnum):
    """Finance counters, per quarter hour of Meta's time, WABA and number."""

    INBOUND_MESSAGES = "inbound_messages"
    INBOUND_CALLS = "inbound_calls"
    SERVICE_WINDOWS_OPENED = "service_windows_opened"
    ENTRY_POINT_WINDOWS_OPENED = "entry_point_windows_opened"
    CONVERSATIONS_OPENED = "conversations_opened"
    MESSAGES_DELIVERED = "messages_delivered"
    CSW_CORRECTIONS = "csw_corrections"
    CONVERSATION_DISAGREEMENTS = "conversation_disagreements"


#: the dimensions of the metrics that have them, in their stored order
DIMENSIONS: dict[str, tuple[str, ...]] = {
    Metric.CONVERSATIONS_OPENED: ("category", "initiator", "type", "source"),
    Metric.MESSAGES_DELIVERED: ("pricing_category", "pricing_type", "billable"),
}


@dataclass(frozen=True, slots=True)
class CounterField:
    """One stored counter: the field ``<quarter>|<waba>|<number>|<metric>|<dims…>`` of the
    shard's HASH for UTC day ``day`` (see :func:`wawindow.keys.counters`)."""

    day: int  # days since 1970-01-01, UTC
    quarter: int  # 0-95 within the day
    waba_id: str
    phone_number_id: str
    metric: str
    dimensions: tuple[str, ...] = ()

    @classmethod
    def at(
        cls, ts: int, waba_id: str, phone_number_id: str, metric: str, dims: tuple[str, ...] = ()
    ) -> CounterField:
        return cls(ts // DAY, ts % DAY // QUARTER, waba_id, phone_number_id, metric, dims)

    def encode(self) -> str:
        return "|".join(
            (str(self.quarter), self.waba_id, self.phone_number_id, self.metric, *self.dimensions)
        )

    @classmethod
    def decode(cls, day: int, field: str) -> CounterField:
        quarter, waba, number, metric, *dims = field.split("|")
        return cls(day, int(quarter), waba, number, metric, tuple(d for d in dims if d))

    @property
    def start(self) -> int:
        """The quarter hour's start, Unix seconds."""
        return self.day * DAY + self.quarter * QUARTER
