"""The suppression rules on their own: what an erasure keeps of a person's opt-outs, and what
lifts it (:mod:`wawindow.rules.suppression`). Pure: no Kafka, no Redis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import examples
from wawindow.rules.consent import Consent, Decision
from wawindow.rules.send_check import decide
from wawindow.rules.suppression import (
    Suppression,
    at_erasure,
    carried,
    combine,
    digest,
    merge,
)

KEY = b"k"
CATS = ("marketing", "utility", "authentication")
DAY = 86_400
ERASED = 1_800_000_000


def stop(at: int) -> Decision:
    return Decision(at, False, "all", "whatsapp_keyword", id=f"kw:{at}")


def marketing_stop(at: int, source: str = "user_preferences") -> Decision:
    return Decision(at, False, "marketing", source, id=f"{source}:{at}")


def resume(at: int) -> Decision:
    return Decision(at, True, "marketing", "user_preferences", id=f"up:{at}")


def recorded(at: int, category: str, opt_in: bool) -> Decision:
    return Decision(
        at, opt_in, category, "website_form", "form v3", "proof-1", "api:x", id=f"r{at}"
    )


def erase(*decisions: Decision, before: tuple[Suppression, ...] = ()) -> Suppression:
    return at_erasure("1", ERASED, ["d1"], list(decisions), before, CATS, 400 * DAY)


def refused(
    entry: Suppression,
    policy: str,
    kind: str,
    since: tuple[Decision, ...] = (),
    now: int = ERASED + 60,
) -> str | None:
    answer = decide(None, None, policy, kind, None, [entry], list(since), now)
    return answer.reason if answer.suppressed else None


def test_the_digest_is_keyed_and_names_no_id() -> None:
    d = digest(KEY, "102290129340398", "16505551234")

    assert d == digest(KEY, "102290129340398", "16505551234")
    assert d != digest(b"other key", "102290129340398", "16505551234")
    assert d != digest(KEY, "102290129340399", "16505551234")
    assert "16505551234" not in d
    assert len(d) == 32


def test_a_stop_keyword_refuses_every_template_under_every_policy() -> None:
    entry = erase(stop(ERASED - DAY))

    for policy in ("off", "record", "enforce"):
        for kind in ("template:marketing", "template:utility", "template:authentication"):
            assert refused(entry, policy, kind) == "opted_out", (policy, kind)


def test_a_marketing_stop_refuses_marketing_only() -> None:
    for source in ("user_preferences", "meta_131050"):
        entry = erase(marketing_stop(ERASED - DAY, source))

        for policy in ("off", "enforce"):
            assert refused(entry, policy, "template:marketing") == "marketing_opted_out"
        assert refused(entry, "off", "template:utility") is None
        # under enforce the utility template is refused anyway (no opt-in), but not by this
        assert refused(entry, "enforce", "template:utility") is None


def test_a_recorded_opt_out_counts_under_enforce_and_only_there() -> None:
    entry = erase(recorded(ERASED - DAY, "utility", False))

    assert refused(entry, "enforce", "template:utility") == "opted_out_of_category"
    assert refused(entry, "off", "template:utility") is None
    assert refused(entry, "record", "template:utility") is None


def test_what_was_not_refused_before_is_not_refused_after() -> None:
    # STOP, then a newer opt-in to marketing: under enforce marketing was allowed
    entry = erase(stop(ERASED - 2 * DAY), recorded(ERASED - DAY, "marketing", True))

    assert refused(entry, "enforce", "template:marketing") is None
    assert refused(entry, "enforce", "template:utility") == "opted_out"
    assert refused(entry, "off", "template:marketing") == "opted_out"  # off reads no API opt-in
    # a resume lifts a marketing stop before the erasure: nothing kept of it
    lifted = erase(marketing_stop(ERASED - 2 * DAY), resume(ERASED - DAY))
    assert lifted.empty


def test_a_newer_opt_in_for_the_category_or_all_lifts_it() -> None:
    entry = erase(stop(ERASED - DAY))
    after = ERASED + 10

    assert refused(entry, "off", "template:marketing", (resume(after),)) is None
    assert refused(entry, "off", "template:utility", (resume(after),)) == "opted_out"
    assert refused(entry, "off", "template:utility", (recorded(after, "all", True),)) is None
    # an opt-out after the erasure is the person's own again, not a suppression
    assert refused(entry, "off", "template:utility", (recorded(after, "all", False),)) == (
        "opted_out"
    )


def test_nothing_but_times_categories_and_sources_is_kept() -> None:
    entry = erase(recorded(ERASED - DAY, "utility", False), stop(ERASED - DAY))
    body = entry.encode()

    for personal in (b"form v3", b"proof-1", b"api:x"):
        assert personal not in body
    assert Suppression.decode(body) == entry


def test_a_webhook_opt_out_is_kept_for_the_setting_and_a_recorded_one_for_good() -> None:
    webhook = erase(stop(ERASED - DAY))
    api = erase(recorded(ERASED - DAY, "utility", False))

    assert webhook.keep_until() == ERASED + 400 * DAY
    assert refused(webhook, "off", "template:utility", now=ERASED + 400 * DAY) is None
    assert api.keep_until() == 0


def test_a_later_erasure_keeps_what_was_still_in_force() -> None:
    first = erase(stop(ERASED - DAY), marketing_stop(ERASED - DAY))
    later = ERASED + 10 * DAY
    # the person opts back in to marketing, then is erased again
    decisions = [resume(ERASED + DAY)]
    second = at_erasure("1", later, ["d1"], decisions, [first], CATS, 400 * DAY)

    assert "marketing" not in second.webhook  # lifted before the second erasure
    assert second.webhook["all"] == first.webhook["all"]
    assert second.erased_at == later
    # what the first erasure's record says, read after, changes nothing
    assert combine(second, first) is None
    assert combine(first, second) == second


def test_entries_of_the_same_erasure_merge_and_never_lose_an_opt_out() -> None:
    full = erase(stop(ERASED - DAY), recorded(ERASED - DAY, "utility", False))
    partial = erase(stop(ERASED - DAY))  # a replay that found less on file

    assert combine(full, partial) == full
    assert combine(partial, full) == full


def realistic(at: int, kind: int, opt_in: bool, category: str) -> Decision:
    """A decision as it reaches the person's history: a keyword is always a STOP of
    everything, a 131050 always a marketing stop, user_preferences a marketing stop or
    resume, and the business records anything."""
    if kind == 0:
        return stop(at)
    if kind == 1:
        return marketing_stop(at, "meta_131050")
    if kind == 2:
        return resume(at) if opt_in else marketing_stop(at)
    return recorded(at, category, opt_in)


decisions = st.lists(
    st.builds(
        realistic,
        st.integers(ERASED - 5 * DAY, ERASED),
        st.integers(0, 3),
        st.booleans(),
        st.sampled_from(["marketing", "utility", "authentication", "all"]),
    ),
    max_size=8,
)


def webhook_view(ds: list[Decision]) -> dict[str, bool]:
    """What a conversation's view says of webhook-borne opt-outs: per kind, the newest
    decision (a stop wins a tie)."""

    def newest_is_stop(sources: tuple[str, ...]) -> bool:
        borne = [d for d in ds if d.source in sources]
        newest = max(borne, key=lambda d: (d.at, not d.opt_in), default=None)
        return newest is not None and not newest.opt_in

    return {
        "opted_out": newest_is_stop(("whatsapp_keyword",)),
        "marketing_opt_out": newest_is_stop(("user_preferences", "meta_131050")),
    }


@settings(max_examples=examples(100))
@given(decisions, st.permutations(range(3)))
def test_how_entries_of_one_erasure_meet_does_not_change_what_is_kept(
    ds: list[Decision], order: list[int]
) -> None:
    parts = [erase(*ds[i::3]) for i in range(3)]
    one = parts[order[0]]
    for i in order[1:]:
        merged = combine(one, parts[i])
        assert merged is not None
        one = merged

    assert one == merge(merge(parts[0], parts[1]), parts[2])
    assert combine(one, one) == one


@settings(max_examples=examples(300))
@given(
    decisions,
    st.sampled_from(["off", "record", "enforce"]),
    st.sampled_from(["marketing", "utility", "authentication"]),
)
def test_the_erasure_refuses_exactly_what_was_refused_before(
    ds: list[Decision], policy: str, category: str
) -> None:
    """Under any policy, for a person with no window open whose consent is ``ds``, a
    template is refused for an opt-out after the erasure exactly when it was before, with
    the same reason, and ``suppressed``."""
    kind = f"template:{category}"
    before = decide(webhook_view(ds), Consent.of(ds), policy, kind)
    after = decide(None, Consent(), policy, kind, None, [erase(*ds)], [], ERASED + 1)

    opt_out_reasons = ("opted_out", "marketing_opted_out", "opted_out_of_category")
    if before.reason in opt_out_reasons:
        assert (after.reason, after.suppressed) == (before.reason, True)
    else:
        assert not after.suppressed


@settings(max_examples=examples(100))
@given(decisions, st.sampled_from(["marketing", "utility", "all"]))
def test_an_opt_in_after_the_erasure_lifts_it_for_its_category(
    ds: list[Decision], category: str
) -> None:
    entry = erase(*ds)
    opt_in = recorded(ERASED + 5, category, True)
    checked = "utility" if category == "all" else category

    for policy in ("off", "enforce"):
        assert refused(entry, policy, f"template:{checked}", (opt_in,)) is None
    # an older entry is carried into a later erasure only while nothing lifted it
    assert carried(entry, [], ERASED + 1).webhook == entry.webhook
    lifted = carried(entry, [recorded(ERASED + 5, "all", True)], ERASED + 10)
    assert (lifted.webhook, lifted.consent) == ({}, {})
