"""The sender's question, as one pure function: may this message of this kind go to this
person now, and if not, why?

- A free-form message needs an open customer service window
  (``window_closed_template_required``); inside it, it answers to the window, not to consent.
- A template is refused to a person who opted out of everything on WhatsApp (``opted_out``,
  a keyword such as STOP), and a marketing template to one who stopped marketing messages
  (``marketing_opted_out``, from ``user_preferences`` or a 131050 failure).
- Under the consent policy ``enforce``, a template needs an opt-in on record for its
  category (or for ``all``) and no newer opt-out, from any channel: else ``no_opt_in``, or
  for an opt-out the reason of where it came from (``opted_out`` for a keyword,
  ``marketing_opted_out`` for ``user_preferences`` or 131050, ``opted_out_of_category`` for
  one recorded by the business). Under ``record`` the answer is as under ``off`` and says
  what consent is on file; ``off`` ignores recorded consent.
- An erased person's opt-outs outlive the erasure (:mod:`wawindow.rules.suppression`): a
  template the person refused before is refused after, with the same reason and
  ``suppressed``, until a newer opt-in for its category or ``all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wawindow.rules.consent import Consent, Decision, State
from wawindow.rules.suppression import WEBHOOK_REASONS, Suppression, reason_of

POLICIES = ("off", "record", "enforce")


@dataclass(frozen=True, slots=True)
class Answer:
    allowed: bool
    reason: str | None
    requires_template: bool
    consent: dict[str, State] | None = None  # what is on file, under "record" and "enforce"
    suppressed: bool = False  # refused by what an erasure kept


def decide(
    view: dict[str, Any] | None,
    consent: Consent | None,
    policy: str,
    kind: str,
    consent_category: str | None = None,
    suppressions: Sequence[Suppression] = (),
    decisions: Sequence[Decision] = (),
    now: int = 0,
) -> Answer:
    """``view``: the user's window view (``None``: never seen); ``consent``: what is on file,
    recorded and webhook-borne decisions together; ``kind``: ``free_form`` or
    ``template:<category>``; ``consent_category``: an operator's finer category to check
    instead of the template's; ``suppressions``: what erasures of the person kept, with the
    ``decisions`` on file (what lifts them) and the time ``now``."""
    window = (view or {}).get("service_window") or {}
    window_open = bool(window.get("open"))
    category = kind.removeprefix("template:") if kind != "free_form" else None
    checked = consent_category or category
    consent = consent or Consent()
    on_file = None
    if policy != "off" and checked is not None and category is not None:
        on_file = {checked: consent.state(checked)}
    reason = None
    if category is None:
        if not window_open:
            reason = "window_closed_template_required"
    elif policy == "enforce" and checked is not None:
        # the newest decision on file, from any channel: a keyword STOP is lifted by a newer
        # opt-in, and a newer opt-out refuses whatever came before
        d = consent.deciding(checked)
        # a finer category answers to its template's category too: Meta's own opt-outs of it
        # always, and the business's when newer than the finer opt-in
        broad = consent.deciding(category) if checked != category else None
        if (
            broad is not None
            and not broad.opt_in
            and (broad.source in WEBHOOK_REASONS or d is None or broad.at >= d.at)
        ):
            d = broad
        if d is None:
            reason = "no_opt_in"
        elif not d.opt_in:
            reason = reason_of(d.source)
    elif view is not None and view.get("opted_out"):
        reason = "opted_out"
    elif category == "marketing" and view is not None and view.get("marketing_opt_out"):
        reason = "marketing_opted_out"
    suppressed = False
    if category is not None and reason in (None, "no_opt_in"):
        for entry in suppressions:
            since = [d for d in decisions if d.at > entry.erased_at]
            kept = entry.refusing(policy, checked or category, category, since, now)
            if kept is not None:
                reason, suppressed = kept, True
                break
    return Answer(reason is None, reason, not window_open, on_file, suppressed)
