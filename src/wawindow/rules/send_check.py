"""The sender's question, as one pure function: may this message of this kind go to this
person now, and if not, why?

- A free-form message needs an open customer service window
  (``window_closed_template_required``); inside it, it answers to the window, not to consent.
- A template is refused to a person who opted out of everything on WhatsApp (``opted_out``,
  a keyword such as STOP), and a marketing template to one who stopped marketing messages
  (``marketing_opted_out``, from ``user_preferences`` or a 131050 failure).
- Under the consent policy ``enforce``, a template also needs an opt-in on record for its
  category (or for ``all``) and no newer opt-out: else ``no_opt_in`` or
  ``opted_out_of_category``. Under ``record`` the answer is as under ``off`` and says what
  consent is on file; ``off`` ignores consent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wawindow.rules.consent import Consent, State

POLICIES = ("off", "record", "enforce")


@dataclass(frozen=True, slots=True)
class Answer:
    allowed: bool
    reason: str | None
    requires_template: bool
    consent: dict[str, State] | None = None  # what is on file, under "record" and "enforce"


def decide(view: dict[str, Any] | None, consent: Consent | None, policy: str, kind: str) -> Answer:
    """``view``: the user's window view (``None``: never seen); ``kind``: ``free_form`` or
    ``template:<category>``."""
    window = (view or {}).get("service_window") or {}
    window_open = bool(window.get("open"))
    category = kind.removeprefix("template:") if kind != "free_form" else None
    on_file = None
    if policy != "off" and category is not None:
        on_file = {category: (consent or Consent()).state(category)}
    reason = None
    if category is None:
        if not window_open:
            reason = "window_closed_template_required"
    elif view is not None and view.get("opted_out"):
        reason = "opted_out"
    elif category == "marketing" and view is not None and view.get("marketing_opt_out"):
        reason = "marketing_opted_out"
    elif policy == "enforce" and on_file is not None:
        state = on_file[category]
        if state == "opted_out":
            reason = "opted_out_of_category"
        elif state == "unknown":
            reason = "no_opt_in"
    return Answer(reason is None, reason, not window_open, on_file)
