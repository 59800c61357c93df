"""Hypothesis strategies: timelines of webhook bodies for one business number, delivered in
random orders, with duplicates and delays of up to Meta's 7 days of retries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from wawindow.dev import samples
from wawindow.ingest.split import SplitOptions, split_body

HOUR = 3600
DAY = 86_400
T0 = 4_000_000_000  # every timeline starts here: in the future, so no key Redis keeps expires
SPAN = 6 * DAY  # how far apart a timeline's own times are
RETRIES = 7 * DAY  # Meta re-sends for up to 7 days, in any order
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


@dataclass(frozen=True)
class Delivery:
    """One webhook body as it arrives: its content and the wall clock at its arrival."""

    body: bytes
    arrives: int


def _at(draw: Any) -> int:
    return T0 + int(draw(st.integers(0, SPAN // 60))) * 60


@st.composite
def items(draw: Any) -> list[dict[str, Any]]:
    """The changes of one webhook item of a random kind (as Meta would send it)."""
    kind = draw(
        st.sampled_from(
            ["inbound", "inbound", "referral", "stop", "call", "status", "status", "status",
             "failed", "preference", "group", "group_status"]
        )
    )  # fmt: skip
    at = _at(draw)
    n = draw(st.integers(0, 5))
    if kind in ("inbound", "referral", "stop"):
        text = "STOP" if kind == "stop" else "hello"
        referral = samples.ad_referral() if kind == "referral" else None
        message = samples.text_message(f"wamid.in{at}", at, text, wa_id=USER, referral=referral)
        return [samples.messages_change(messages=[message])]
    if kind == "call":
        return [samples.calls_change(calls=[samples.call(f"wacid.{at}", "connect", at)])]
    if kind == "status":
        state = draw(st.sampled_from(["sent", "delivered", "read"]))
        pricing = draw(st.sampled_from(PRICINGS))
        return [samples.messages_change(statuses=[samples.status(f"wamid.out{n}", state, at,
                                                                 pricing=pricing)])]  # fmt: skip
    if kind == "failed":
        code = draw(st.sampled_from([131047, 131050]))
        return [samples.messages_change(statuses=[samples.status(f"wamid.out{n}", "failed", at,
                                                                 error_code=code)])]  # fmt: skip
    if kind == "preference":
        value = draw(st.sampled_from(["stop", "resume"]))
        return [_preference(value, at)]
    if kind == "group":
        message = samples.group_message(f"wamid.g{at}", at, GROUP, wa_id=PARTICIPANTS[n % 2])
        return [samples.messages_change(messages=[message])]
    state = draw(st.sampled_from(["sent", "delivered", "read"]))
    status = samples.group_status(
        f"wamid.gout{n % 2}", state, at, GROUP, participant_wa_id=PARTICIPANTS[n % 2],
        pricing=draw(st.sampled_from(PRICINGS[:3])),
    )  # fmt: skip
    return [samples.messages_change(statuses=[status])]


def _preference(value: str, at: int) -> dict[str, Any]:
    return {
        "field": "user_preferences",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": samples.PHONE_NUMBER_ID,
            },
            "contacts": [samples.contact(USER)],
            "user_preferences": [
                {
                    "wa_id": USER,
                    "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": str(at),
                }
            ],
        },
    }


@st.composite
def timelines(draw: Any, max_items: int = 14) -> list[Delivery]:
    """Webhook bodies in a random arrival order, some twice, each arriving after its own
    time by a delay of up to 7 days; wall-clock arrivals never go backwards."""
    drawn = [
        samples.encode(samples.body(*c))
        for c in draw(st.lists(items(), min_size=1, max_size=max_items))
    ]
    # Meta re-sends a webhook as it was: two different items never share an event id
    bodies: list[bytes] = []
    ids: set[str] = set()
    for raw in drawn:
        these = {e.event_id for e in split_body(raw, 0, OPTIONS).events}
        if not these & ids:
            bodies.append(raw)
            ids |= these
    repeats = draw(st.lists(st.sampled_from(bodies), max_size=3))
    order = draw(st.permutations(bodies + repeats))
    out: list[Delivery] = []
    clock = T0
    for raw in order:
        latest = max(e.timestamp or T0 for e in split_body(raw, 0, OPTIONS).events)
        clock = max(clock, latest + draw(st.integers(0, RETRIES // HOUR)) * HOUR)
        out.append(Delivery(raw, clock))
    return out


def events_of(delivery: Delivery) -> list[dict[str, Any]]:
    """The worker's view of one body: the receiver's split, as decoded from Kafka."""
    import orjson

    split = split_body(delivery.body, delivery.arrives * 1000, OPTIONS)
    return [orjson.loads(e.encode()) for e in split.events]
