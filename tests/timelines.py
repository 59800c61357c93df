"""Hypothesis strategies: timelines of webhook bodies for one business number, delivered in
random orders, with duplicates and delays of up to Meta's 7 days of retries; the user named
by their wa_id alone (:func:`timelines`) or, as since 2026, by either or both of their ids,
which may change on the way (:func:`timelines_of_ids`); and sweeps between deliveries
(:func:`with_sweeps`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hypothesis import strategies as st

from wawindow.dev import samples
from wawindow.ingest.split import SplitOptions, split_body

HOUR = 3600
DAY = 86_400
T0 = 4_000_000_000  # every timeline starts here: in the future, so no key Redis keeps expires
SPAN = 6 * DAY  # how far apart a timeline's own times are
RETRIES = 7 * DAY  # Meta re-sends for up to 7 days, in any order
RETURN = 12 * DAY  # a user back after the tracker forgot their history (8 days after it ended)
USER = "16505551234"
OPTIONS = SplitOptions(opt_out_keywords=frozenset({"STOP"}))

PRICINGS = [
    None,
    {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"},
    {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"},
    {"pricing_model": "PMP", "type": "free_customer_service", "category": "service"},
    {"pricing_model": "PMP", "type": "free_entry_point", "category": "service"},
    {"pricing_model": "PMP", "type": "regular", "category": "authentication-international"},
]
GROUP = "Y2FtcGFpZ24"
PARTICIPANTS = ["16505550001", "16505550002"]
GROUP_KINDS = ("group", "group_status")  # a participant's ids name no conversation of theirs

# the user's other ids: their BSUID, and the ids a change of number or of BSUID gives them
BSUID = "US.13491208655302741918"
NEW_USER = "16505559876"  # the number they changed to
NEW_BSUID = "US.24681208655302741918"  # the BSUID regenerated with the new number
LATEST_BSUID = "US.35791208655302741918"  # the BSUID of a user_changed_user_id


@dataclass(frozen=True)
class Delivery:
    """One webhook body as it arrives: its content and the wall clock at its arrival."""

    body: bytes
    arrives: int


@dataclass(frozen=True)
class Names:
    """How one webhook item names its user: by its own ids, and by a ``contacts[]`` entry
    (``(wa_id, user_id)``), from which the receiver completes an id the item leaves out."""

    wa_id: str | None = USER
    user_id: str | None = None
    contact: tuple[str | None, str | None] | None = None


# how the items of a timeline name their user, given a draw and the item's time
Naming = Callable[[Any, int], Names]


def _at(draw: Any) -> int:
    return T0 + int(draw(st.integers(0, SPAN // 60))) * 60


@st.composite
def items(draw: Any, naming: Naming | None = None, later: int = 0) -> list[dict[str, Any]]:
    """The changes of one webhook item of a random kind (as Meta would send it); its user
    named as ``naming`` draws (by default by the wa_id ``USER`` alone). With ``later``, some
    items are of a return that much later (the user writing again, weeks on)."""
    kind = draw(
        st.sampled_from(
            ["inbound", "inbound", "referral", "stop", "call", "status", "status", "status",
             "failed", "preference", "group", "group_status"]
        )
    )  # fmt: skip
    at = _at(draw)
    if later and draw(st.booleans()):
        at += later
    n = draw(st.integers(0, 5))
    who = naming(draw, at) if naming is not None and kind not in GROUP_KINDS else Names()
    ids: dict[str, Any] = {"wa_id": who.wa_id, "user_id": who.user_id}
    contacts = None if who.contact is None else [samples.contact(*who.contact)]
    if kind in ("inbound", "referral", "stop"):
        text = "STOP" if kind == "stop" else "hello"
        referral = samples.ad_referral() if kind == "referral" else None
        message = samples.text_message(f"wamid.in{at}", at, text, referral=referral, **ids)
        return [samples.messages_change(messages=[message], contacts=contacts)]
    if kind == "call":
        call = samples.call(f"wacid.{at}", "connect", at, **ids)
        return [samples.calls_change(calls=[call], contacts=contacts)]
    if kind == "status":
        state = draw(st.sampled_from(["sent", "delivered", "read"]))
        pricing = draw(st.sampled_from(PRICINGS))
        status = samples.status(f"wamid.out{n}", state, at, pricing=pricing, **ids)
        return [samples.messages_change(statuses=[status], contacts=contacts)]
    if kind == "failed":
        code = draw(st.sampled_from([131047, 131050]))
        status = samples.status(f"wamid.out{n}", "failed", at, error_code=code, **ids)
        return [samples.messages_change(statuses=[status], contacts=contacts)]
    if kind == "preference":
        value = draw(st.sampled_from(["stop", "resume"]))
        return [_preference(value, at, who)]
    if kind == "group":
        message = samples.group_message(f"wamid.g{at}", at, GROUP, wa_id=PARTICIPANTS[n % 2])
        return [samples.messages_change(messages=[message])]
    state = draw(st.sampled_from(["sent", "delivered", "read"]))
    status = samples.group_status(
        f"wamid.gout{n % 2}", state, at, GROUP, participant_wa_id=PARTICIPANTS[n % 2],
        pricing=draw(st.sampled_from(PRICINGS[:3])),
    )  # fmt: skip
    return [samples.messages_change(statuses=[status])]


def _preference(value: str, at: int, who: Names) -> dict[str, Any]:
    preference: dict[str, Any] = {
        "detail": "User requested to stop marketing messages",
        "category": "marketing_messages",
        "value": value,
        "timestamp": str(at),
    }
    if who.wa_id:
        preference["wa_id"] = who.wa_id
    if who.user_id:
        preference["user_id"] = who.user_id
    return {
        "field": "user_preferences",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": samples.PHONE_NUMBER_ID,
            },
            "contacts": [samples.contact(*(who.contact or (who.wa_id, who.user_id)))],
            "user_preferences": [preference],
        },
    }


@st.composite
def timelines(draw: Any, max_items: int = 14) -> list[Delivery]:
    """Webhook bodies in a random arrival order, some twice, each arriving after its own
    time by a delay of up to 7 days; wall-clock arrivals never go backwards."""
    return _arrivals(draw, draw(st.lists(items(), min_size=1, max_size=max_items)))


@dataclass(frozen=True)
class Story:
    """One user's ids over a timeline: from which Meta time on they are which
    ``(wa_id, user_id)``, oldest first; and the system messages that changed them."""

    eras: list[tuple[int, str, str]]
    changes: list[list[dict[str, Any]]]

    def ids_at(self, at: int) -> tuple[str, str]:
        _, wa_id, user_id = [e for e in self.eras if e[0] <= at][-1]
        return wa_id, user_id

    def naming(self, draw: Any, at: int) -> Names:
        """The user's ids at ``at``: their wa_id alone, their BSUID alone, both, or one of
        them with a ``contacts[]`` entry naming both (which the receiver completes it from)."""
        wa_id, user_id = self.ids_at(at)
        how = draw(st.sampled_from(["wa_id", "user_id", "both", "contacts"]))
        if how == "wa_id":
            return Names(wa_id, None)
        if how == "user_id":
            return Names(None, user_id)
        if how == "both":
            return Names(wa_id, user_id)
        by_wa_id = draw(st.booleans())
        return Names(wa_id if by_wa_id else None, None if by_wa_id else user_id, (wa_id, user_id))


@st.composite
def stories(draw: Any) -> Story:
    """A user known by a wa_id and a BSUID who, in some timelines, changes their number
    (``user_changed_number``: a new wa_id and BSUID), their BSUID (``user_changed_user_id``)
    or both in turn; each system message naming the old ids as Meta may (the old BSUID or
    not, the new BSUID or not)."""
    eras = [(T0, USER, BSUID)]
    changes: list[list[dict[str, Any]]] = []
    which = draw(st.sampled_from([(), (), ("number",), ("user_id",), ("number", "user_id")]))
    times = sorted(draw(st.lists(st.integers(1, SPAN // 60), min_size=2, max_size=2, unique=True)))
    for i, (kind, minute) in enumerate(zip(which, times, strict=False)):
        at = T0 + minute * 60
        _, wa_id, user_id = eras[-1]
        if kind == "number":
            old_user_id = user_id if draw(st.booleans()) else None
            new_user_id = NEW_BSUID if draw(st.booleans()) else None
            message = samples.number_change(
                f"wamid.change{i}", at, wa_id, NEW_USER,
                old_user_id=old_user_id, new_user_id=new_user_id,
            )  # fmt: skip
            eras.append((at, NEW_USER, NEW_BSUID))
        else:
            old_wa_id = wa_id if draw(st.booleans()) else None
            message = samples.user_id_change(
                f"wamid.change{i}", at, user_id, LATEST_BSUID, old_wa_id=old_wa_id
            )
            eras.append((at, wa_id, LATEST_BSUID))
        changes.append([samples.messages_change(messages=[message])])
    return Story(eras, changes)


@st.composite
def timelines_of_ids(draw: Any, max_items: int = 14) -> list[Delivery]:
    """As :func:`timelines`, the user named in each item by their wa_id, their BSUID or both
    (:meth:`Story.naming`), as they were at the item's time: the events link the user's keys
    (``wawindow.rules.identity.links_of``), and a change of ids moves them to new ones. The
    bodies arrive in any order or mostly in the order of their times, up to an hour, a day
    or 7 days late; some a few items to a body (whose links the engine makes in one call);
    some of a return of the user after what they left was forgotten."""
    story = draw(stories())
    later = draw(st.sampled_from([0, 0, RETURN]))
    drawn = draw(st.lists(items(story.naming, later), min_size=3, max_size=max_items))
    changes = story.changes + drawn
    if draw(st.booleans()):
        changes = _batched(draw, changes)
    # mostly in order and soon, some: then windows are still open at arrival, for the
    # sweeps between deliveries to warn and close
    in_order = draw(st.booleans())
    delay = draw(st.sampled_from([HOUR, DAY, RETRIES]))
    return _arrivals(draw, changes, mostly_in_order=in_order, delay=delay, unit=60)


def _batched(draw: Any, changes: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The items in the order of their times, up to three to a body, as Meta batches them."""
    timed = sorted(changes, key=lambda c: _latest(samples.encode(samples.body(*c))))
    out: list[list[dict[str, Any]]] = []
    while timed:
        n = draw(st.integers(1, 3))
        out.append([change for item in timed[:n] for change in item])
        timed = timed[n:]
    return out


def _arrivals(
    draw: Any,
    changes: list[list[dict[str, Any]]],
    *,
    mostly_in_order: bool = False,
    delay: int = RETRIES,
    unit: int = HOUR,
) -> list[Delivery]:
    """The bodies of ``changes`` (one body each) in a random arrival order (or in the order
    of their times, but for a few moved), some twice, each arriving after its own time by a
    delay of up to ``delay`` (7 days), in whole ``unit``s."""
    drawn = [samples.encode(samples.body(*c)) for c in changes]
    # Meta re-sends a webhook as it was: two different items never share an event id
    bodies: list[bytes] = []
    ids: set[str] = set()
    for raw in drawn:
        these = {e.event_id for e in split_body(raw, 0, OPTIONS).events}
        if not these & ids:
            bodies.append(raw)
            ids |= these
    repeats = draw(st.lists(st.sampled_from(bodies), max_size=3))
    if mostly_in_order:
        order = sorted(bodies + repeats, key=_latest)
        last = len(order) - 1
        for i, j in draw(st.lists(st.tuples(st.integers(0, last), st.integers(0, last)),
                                  max_size=3)):  # fmt: skip
            order.insert(j, order.pop(i))
    else:
        order = draw(st.permutations(bodies + repeats))
    out: list[Delivery] = []
    clock = T0
    for raw in order:
        clock = max(clock, _latest(raw) + draw(st.integers(0, delay // unit)) * unit)
        out.append(Delivery(raw, clock))
    return out


def _latest(raw: bytes) -> int:
    """The time of a body's latest item."""
    return max(e.timestamp or T0 for e in split_body(raw, 0, OPTIONS).events)


@dataclass(frozen=True)
class Sweep:
    """The sweeper's pass at a wall-clock time: what is due then is warned or closed."""

    at: int


@st.composite
def with_sweeps(draw: Any, deliveries: list[Delivery]) -> list[Delivery | Sweep]:
    """The deliveries with sweeps between them: up to two in each gap between two arrivals,
    at random times within it (the wall clock still never goes backwards)."""
    out: list[Delivery | Sweep] = [deliveries[0]]
    for before, d in pairwise(deliveries):
        gap = d.arrives - before.arrives
        for eighth in sorted(draw(st.lists(st.integers(0, 8), max_size=2))):
            out.append(Sweep(before.arrives + gap * eighth // 8))
        out.append(d)
    return out


def events_of(delivery: Delivery) -> list[dict[str, Any]]:
    """The worker's view of one body: the receiver's split, as decoded from Kafka."""
    import orjson

    split = split_body(delivery.body, delivery.arrives * 1000, OPTIONS)
    return [orjson.loads(e.encode()) for e in split.events]
