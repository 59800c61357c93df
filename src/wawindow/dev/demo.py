"""The demo set ``wawindow dev`` replays: two numbers of one WABA and six users, on a timeline
that ends now, so that some windows are still open and others closed long ago.

What it holds, by user (``wa_id``), all shaped like Meta's bodies:

- 16505550101, number A: writes 2 h ago, gets a free-form reply whose statuses arrive out of
  order (``read`` before ``delivered``) and twice (Meta's re-send): a user-initiated service
  conversation, one delivered message.
- 16505550102, number A: wrote 30 h ago, so the service window has closed already; a marketing
  template 1 h ago opens a business-initiated marketing conversation.
- 16505550103, number A: writes 5 h ago, gets a utility template in the window 4 h ago.
- 16505550104, number B: answers a click-to-WhatsApp ad 3 h ago and gets a reply 2 h ago:
  a 72-hour free entry point window.
- 16505550105, number B: writes "STOP" 1 h ago: opted out by keyword.
- 16505550106, number B: stops marketing messages in WhatsApp's settings (``user_preferences``).

The same inbound message is also delivered twice, as Meta does on a retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wawindow.dev import samples

WABA_ID = samples.WABA_ID
NUMBER_A = ("106540352242922", "15550783881")
NUMBER_B = ("106540352242923", "15550783882")
HOUR = 3600
# how long before ``now`` the demo's oldest webhook is (16505550102's message)
OLDEST_S = 30 * HOUR


@dataclass(frozen=True, slots=True)
class DemoUser:
    phone_number_id: str
    wa_id: str
    story: str


USERS = (
    DemoUser(NUMBER_A[0], "16505550101", "service reply, statuses out of order and repeated"),
    DemoUser(NUMBER_A[0], "16505550102", "window closed 6 h ago; marketing template since"),
    DemoUser(NUMBER_A[0], "16505550103", "utility template inside the window"),
    DemoUser(NUMBER_B[0], "16505550104", "free entry point from an ad"),
    DemoUser(NUMBER_B[0], "16505550105", "opted out by writing STOP"),
    DemoUser(NUMBER_B[0], "16505550106", "stopped marketing messages"),
)
# what the worker must have counted once the demo is in: (metric, total)
EXPECTED = {"inbound_messages": 5, "messages_delivered": 4}


def bodies(now: int) -> list[dict[str, Any]]:
    """The demo's webhook bodies, oldest first, for a timeline ending at ``now``."""
    a, b = NUMBER_A, NUMBER_B
    service = samples.pmp_pricing("service", "regular")
    fep = samples.pmp_pricing("referral_conversion", "free_entry_point")
    hello = _inbound(a, "16505550101", "wamid.demo.a1.in", now - 2 * HOUR, "Is my order shipped?")
    out: list[dict[str, Any]] = [
        _inbound(a, "16505550102", "wamid.demo.a2.in", now - OLDEST_S, "Do you deliver?"),
        _inbound(a, "16505550103", "wamid.demo.a3.in", now - 5 * HOUR, "Where is my parcel?"),
        _inbound(
            b,
            "16505550104",
            "wamid.demo.b1.in",
            now - 3 * HOUR,
            "Hi! I saw your ad",
            referral=samples.ad_referral(),
        ),
        hello,
        _statuses(
            a,
            "16505550103",
            "wamid.demo.a3.out",
            now - 4 * HOUR,
            samples.pmp_pricing("utility", "regular"),
        ),
        _statuses(b, "16505550104", "wamid.demo.b1.out", now - 2 * HOUR, fep),
        _status(a, "16505550101", "wamid.demo.a1.out", "sent", now - 2 * HOUR + 60, service),
        _status(a, "16505550101", "wamid.demo.a1.out", "read", now - 2 * HOUR + 120, service),
        _status(a, "16505550101", "wamid.demo.a1.out", "delivered", now - 2 * HOUR + 61, service),
        _status(a, "16505550101", "wamid.demo.a1.out", "delivered", now - 2 * HOUR + 61, service),
        hello,
        _statuses(
            a,
            "16505550102",
            "wamid.demo.a2.out",
            now - HOUR,
            samples.pmp_pricing("marketing", "regular"),
        ),
        _inbound(b, "16505550105", "wamid.demo.b2.in", now - HOUR, "STOP"),
        samples.body(_with_number(samples.preference("16505550106", "stop", now - 1800), b)),
    ]
    return out


def encoded(now: int) -> list[bytes]:
    return [samples.encode(body) for body in bodies(now)]


def _inbound(
    number: tuple[str, str],
    wa_id: str,
    wamid: str,
    at: int,
    text: str,
    referral: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message = samples.text_message(wamid, at, text, wa_id=wa_id, referral=referral)
    change = samples.messages_change(
        messages=[message], contacts=[samples.contact(wa_id=wa_id, name="Demo User")]
    )
    return samples.body(_with_number(change, number))


def _status(
    number: tuple[str, str], wa_id: str, wamid: str, state: str, at: int, pricing: dict[str, Any]
) -> dict[str, Any]:
    change = samples.messages_change(
        statuses=[samples.status(wamid, state, at, wa_id=wa_id, pricing=pricing)]
    )
    return samples.body(_with_number(change, number))


def _statuses(
    number: tuple[str, str], wa_id: str, wamid: str, at: int, pricing: dict[str, Any]
) -> dict[str, Any]:
    """``sent`` and ``delivered`` in one body, as Meta batches them."""
    change = samples.messages_change(
        statuses=[
            samples.status(wamid, "sent", at, wa_id=wa_id, pricing=pricing),
            samples.status(wamid, "delivered", at + 2, wa_id=wa_id, pricing=pricing),
        ]
    )
    return samples.body(_with_number(change, number))


def _with_number(change: dict[str, Any], number: tuple[str, str]) -> dict[str, Any]:
    change["value"]["metadata"] = {"display_phone_number": number[1], "phone_number_id": number[0]}
    return change
