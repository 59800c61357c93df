"""Opt-out decisions: the newest by Meta's time wins, whatever order they arrive in.

- ``marketing_opt_out``: a ``user_preferences`` webhook (``stop`` / ``resume``, category
  ``marketing_messages``), or a ``failed`` status with error 131050 (the user stopped
  marketing messages).
- ``opted_out``: an inbound text or button reply that *is* an opt-out keyword (STOP,
  UNSUBSCRIBE, 退订 …, configurable) records an opt-out request.
- Two decisions at the same second: the stop wins (an opt-out is never lost to a tie).
"""

from __future__ import annotations

from wawindow.rules.state import Decision, State

MARKETING = "marketing_opt_out"
ALL = "opted_out"
FIELDS = (MARKETING, ALL)


def decide(state: State, field: str, at: int, stop: bool, reason: str) -> None:
    current = state.decisions.get(field)
    if current is None or (at, stop) > (current.at, current.value):
        state.decisions[field] = Decision(at, stop, reason)


def opted_out(state: State, field: str) -> bool:
    d = state.decisions.get(field)
    return d is not None and d.value
