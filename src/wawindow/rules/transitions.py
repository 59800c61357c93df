"""What applying the rules produces besides the new state: window transitions (published as
CloudEvents) and finance counter changes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from wawindow.contracts import Metric, TransitionType
from wawindow.rules.state import State


@dataclass(frozen=True, slots=True)
class Transition:
    """A window transition. ``id`` is a hash of the conversation, the type and the window's
    times, so the same transition always gets the same id."""

    type: TransitionType
    id: str
    time: int
    key: str
    data: dict[str, Any]
    waba_id: str | None
    phone_number_id: str | None
    user_id: str | None
    wa_id: str | None

    def encode(self) -> dict[str, Any]:
        return {
            "type": self.type.value, "id": self.id, "time": self.time, "key": self.key,
            "data": self.data, "waba": self.waba_id, "pn": self.phone_number_id,
            "user_id": self.user_id, "wa_id": self.wa_id,
        }  # fmt: skip

    @classmethod
    def decode(cls, item: dict[str, Any]) -> Transition:
        return cls(
            TransitionType(item["type"]), item["id"], int(item["time"]), item["key"],
            item["data"], item.get("waba"), item.get("pn"), item.get("user_id"), item.get("wa_id"),
        )  # fmt: skip


def transition_id(key: str, kind: TransitionType, parts: tuple[Any, ...]) -> str:
    text = "|".join((key, kind.value, *(str(p) for p in parts)))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class CounterChange:
    """``delta`` on a finance counter at Meta's time ``at``."""

    at: int
    metric: Metric
    dims: tuple[str, ...]
    delta: int


@dataclass(slots=True)
class Changes:
    """Collects the transitions and counter changes of one application of the rules."""

    key: str
    phone_number_id: str
    transitions: list[Transition] = field(default_factory=list)
    counters: list[CounterChange] = field(default_factory=list)

    def emit(
        self,
        state: State,
        kind: TransitionType,
        parts: tuple[Any, ...],
        time: int,
        data: dict[str, Any],
    ) -> None:
        self.transitions.append(
            Transition(
                kind,
                transition_id(self.key, kind, parts),
                time,
                self.key,
                data,
                state.waba_id,
                self.phone_number_id,
                state.user_id,
                state.wa_id,
            )
        )

    def count(self, at: int, metric: Metric, dims: tuple[str, ...] = (), delta: int = 1) -> None:
        self.counters.append(CounterChange(at, metric, dims, delta))
