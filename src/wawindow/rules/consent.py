"""Consent: a person's opt-ins and opt-outs to a business (a WABA, not one number), per
category of message (``marketing``, ``utility``, ``authentication``, operator-defined ones)
or for ``all`` of them.

- Each decision has its own time; for each category the newest decision wins, whatever
  order they arrive in, and an ``all`` decision counts for every category. Two decisions at
  the same second: the opt-out wins (an opt-out is never lost to a tie).
- A decision keeps how it was given (source, wording or form version, proof reference, who
  recorded it): what a compliance officer is asked for.

Pure: the store keeps these per person and WABA (see issue 11's consent topic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ALL = "all"
DEFAULT_CATEGORIES = ("marketing", "utility", "authentication")
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
