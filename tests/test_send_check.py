"""The send-check decision, pure, over every combination of window, webhook opt-outs,
consent on file, policy and kind."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from wawindow.finance.pricing import KINDS
from wawindow.rules.consent import ALL, Consent, Decision
from wawindow.rules.send_check import POLICIES, decide

T = 4_000_000_000
CONSENTS = {
    "none": Consent(),
    "marketing_in": Consent({"marketing": Decision(T, True, "marketing")}),
    "all_in": Consent({ALL: Decision(T, True, ALL)}),
    "all_in_then_marketing_out": Consent(
        {ALL: Decision(T, True, ALL), "marketing": Decision(T + 1, False, "marketing")}
    ),
    "marketing_out_then_all_in": Consent(
        {"marketing": Decision(T, False, "marketing"), ALL: Decision(T + 1, True, ALL)}
    ),
    # webhook-borne decisions, as the handler joins them (see rules.consent.from_webhooks)
    "keyword_out": Consent({ALL: Decision(T, False, ALL, "whatsapp_keyword")}),
    "keyword_out_then_utility_in": Consent(
        {
            ALL: Decision(T, False, ALL, "whatsapp_keyword"),
            "utility": Decision(T + 1, True, "utility", "website_form"),
        }
    ),
    "all_in_then_preferences_stop": Consent(
        {
            ALL: Decision(T, True, ALL),
            "marketing": Decision(T + 1, False, "marketing", "user_preferences"),
        }
    ),
}


def view(window_open: bool | None, opted_out: bool, marketing_opt_out: bool) -> dict[str, Any]:
    window = None if window_open is None else {"open": window_open}
    return {
        "service_window": window,
        "opted_out": opted_out,
        "marketing_opt_out": marketing_opt_out,
    }


def expected(
    window_open: bool | None,
    opted_out: bool,
    marketing: bool,
    consent: str,
    policy: str,
    kind: str,
) -> str | None:
    """The rule, written out the long way."""
    if kind == "free_form":
        return None if window_open else "window_closed_template_required"
    category = kind.removeprefix("template:")
    if policy != "enforce":  # the webhooks' opt-outs, as the view shows them
        if opted_out:
            return "opted_out"
        if kind == "template:marketing" and marketing:
            return "marketing_opted_out"
        return None
    # enforce: the newest decision on file for the category or all, whichever channel
    marketing_cat = category == "marketing"
    return {
        "none": "no_opt_in",
        "marketing_in": None if marketing_cat else "no_opt_in",
        "all_in": None,
        "all_in_then_marketing_out": "opted_out_of_category" if marketing_cat else None,
        "marketing_out_then_all_in": None,
        "keyword_out": "opted_out",
        "keyword_out_then_utility_in": None if category == "utility" else "opted_out",
        "all_in_then_preferences_stop": "marketing_opted_out" if marketing_cat else None,
    }[consent]


COMBINATIONS = list(
    itertools.product((None, False, True), (False, True), (False, True), CONSENTS, POLICIES, KINDS)
)


@pytest.mark.parametrize(
    ("window_open", "opted_out", "marketing", "consent", "policy", "kind"), COMBINATIONS
)
def test_every_combination(
    window_open: bool | None,
    opted_out: bool,
    marketing: bool,
    consent: str,
    policy: str,
    kind: str,
) -> None:
    answer = decide(view(window_open, opted_out, marketing), CONSENTS[consent], policy, kind)
    want = expected(window_open, opted_out, marketing, consent, policy, kind)
    assert (answer.allowed, answer.reason) == (want is None, want)
    assert answer.requires_template is (not window_open)
    assert (answer.consent is None) == (policy == "off" or kind == "free_form")


def test_a_user_never_seen_may_get_a_template_unless_consent_is_enforced() -> None:
    assert decide(None, None, "off", "template:utility").allowed
    assert decide(None, None, "enforce", "template:utility").reason == "no_opt_in"
    assert decide(None, None, "off", "free_form").reason == "window_closed_template_required"


def test_the_newest_consent_decision_wins_and_a_tie_goes_to_the_opt_out() -> None:
    c = Consent()
    assert c.record(Decision(T + 10, True, "marketing"))
    assert not c.record(Decision(T + 5, False, "marketing"))  # older: kept out
    assert c.state("marketing") == "opted_in"
    assert c.record(Decision(T + 10, False, "marketing"))  # same second: the opt-out
    assert c.state("marketing") == "opted_out"
    assert c.record(Decision(T + 20, True, ALL))
    assert c.state("marketing") == "opted_in"  # a newer "all" holds for every category


def test_an_operator_category_is_checked_instead_of_the_templates() -> None:
    offers = Consent({"offers": Decision(T, True, "offers")})
    assert decide(None, offers, "enforce", "template:marketing", "offers").allowed
    refused = decide(None, offers, "enforce", "template:marketing", "order_updates")
    assert (refused.reason, refused.consent) == ("no_opt_in", {"order_updates": "unknown"})
    recorded = decide(None, offers, "record", "template:marketing", "offers")
    assert (recorded.allowed, recorded.consent) == (True, {"offers": "opted_in"})


def test_webhook_opt_outs_read_as_consent_decisions() -> None:
    from wawindow.rules.consent import from_webhooks

    got = from_webhooks(
        {"opted_out": (T, True, "keyword"), "marketing_opt_out": (T + 1, False, "user_preferences")}
    )
    assert [(d.category, d.opt_in, d.source, d.at) for d in got] == [
        (ALL, False, "whatsapp_keyword", T),
        ("marketing", True, "user_preferences", T + 1),
    ]


def test_a_finer_category_answers_to_its_templates_opt_outs_too() -> None:
    stopped = Consent(
        {"offers": Decision(T, True, "offers"),
         "marketing": Decision(T + 1, False, "marketing", "user_preferences")}
    )  # fmt: skip
    later_in = Consent(
        {"marketing": Decision(T, False, "marketing", "phone"),
         "offers": Decision(T + 1, True, "offers")}
    )  # fmt: skip
    meta_stop_older = Consent(
        {"marketing": Decision(T, False, "marketing", "meta_131050"),
         "offers": Decision(T + 1, True, "offers")}
    )  # fmt: skip
    kind = "template:marketing"
    assert decide(None, stopped, "enforce", kind, "offers").reason == "marketing_opted_out"
    assert decide(None, later_in, "enforce", kind, "offers").allowed  # opted in since
    assert decide(None, meta_stop_older, "enforce", kind, "offers").reason == (
        "marketing_opted_out"  # Meta blocks it whatever the business recorded
    )
