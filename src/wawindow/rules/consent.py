"""Consent: a person's opt-ins and opt-outs to a business (a WABA, not one number), per
category of message (``marketing``, ``utility``, ``authentication``, operator-defined ones)
or for ``all`` of them.

- Each decision has its own time; for each category the newest decision wins, whatever
  order they arrive in, and an ``all`` decision counts for every category. Two decisions at
  the same second: the opt-out wins (an opt-out is never lost to a tie).
- A decision keeps how it was given (source, wording or form version, proof reference, who
  recorded it): what a compliance officer is asked for.

Pure. A person's recorded decisions are kept in :mod:`wawindow.rules.people`; the decisions
webhooks bring (a STOP keyword, ``user_preferences``, a 131050 failure) are read from the
conversations and join them here (:func:`from_webhooks`): one history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ALL = "all"
State = Literal["opted_in", "opted_out", "unknown"]


@dataclass(frozen=True, slots=True)
class Decision:
    at: int  # Unix seconds: when the person decided
    opt_in: bool
    category: str  # a category, or "all"
    source: str = ""  # e.g. "website_form", "phone", "whatsapp_keyword", "user_preferences"
    wording: str = ""  # the wording or form version shown
    proof: str = ""  # a reference to the record of it
    recorded_by: str = ""
    id: str = ""  # the change's id (the same request always has the same id)
    recorded_at: int = 0  # Unix seconds: when the tracker was told

    @property
    def decision(self) -> str:
        return "opt_in" if self.opt_in else "opt_out"

    def show(self) -> dict[str, object]:
        """The public form (API, CLI, events)."""
        return {
            "id": self.id,
            "category": self.category,
            "decision": self.decision,
            "at": self.at,
            "source": self.source,
            "wording": self.wording,
            "proof": self.proof,
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at,
        }


@dataclass(slots=True)
class Consent:
    """The newest decision per category (``all`` included)."""

    decisions: dict[str, Decision] = field(default_factory=dict)

    def record(self, d: Decision) -> bool:
        """Keep ``d`` if it is newer than what is on file for its category; True if kept."""
        current = self.decisions.get(d.category)
        if current is not None and (d.at, not d.opt_in) <= (current.at, not current.opt_in):
            return False
        self.decisions[d.category] = d
        return True

    def deciding(self, category: str) -> Decision | None:
        """The decision that holds for ``category``: the newer of its own and ``all``'s."""
        candidates = [d for c in (category, ALL) if (d := self.decisions.get(c)) is not None]
        return max(candidates, key=lambda d: (d.at, not d.opt_in), default=None)

    def state(self, category: str) -> State:
        d = self.deciding(category)
        if d is None:
            return "unknown"
        return "opted_in" if d.opt_in else "opted_out"

    @classmethod
    def of(cls, decisions: list[Decision]) -> Consent:
        out = cls()
        for d in decisions:
            out.record(d)
        return out


#: how a webhook-borne decision reads as consent: (opt-out field, reason) -> (category, source)
WEBHOOK_SOURCES = {
    "keyword": (ALL, "whatsapp_keyword"),
    "user_preferences": ("marketing", "user_preferences"),
    "meta_131050": ("marketing", "meta_131050"),
}


def from_webhooks(decisions: dict[str, tuple[int, bool, str]]) -> list[Decision]:
    """A conversation's opt-out decisions (field -> (at, stop, reason), see
    :mod:`wawindow.rules.opt_out`) as consent decisions of the person."""
    out = []
    for field_name, (at, stop, reason) in decisions.items():
        category, source = WEBHOOK_SOURCES.get(reason, (ALL, reason))
        if field_name == "marketing_opt_out":
            category = "marketing"
        out.append(Decision(at, not stop, category, source, id=f"{source}:{at}"))
    return out
