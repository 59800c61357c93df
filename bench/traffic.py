"""Webhook traffic for the worker's benchmarks, as ``(key, encoded event)`` in arrival order,
split by the receiver's own code (:func:`wawindow.ingest.split.split_body`).

- :func:`mix_2026`: bodies shaped as Meta sends them in 2026, where nearly every item names
  both a user's phone number (``wa_id``) and their business-scoped user id (BSUID): 70 % one
  status whose ``contacts`` carry the BSUID, 20 % one inbound text, 8 % five statuses, 2 %
  fifty; users interleaved as in live traffic. ``both_ids=False`` is the same traffic with
  phone numbers only (what the mix costs without identity links).
- :func:`history`: conversations loaded with a given number of facts (the load), and then
  one more exchange per conversation (the timed part): what an event costs on a long
  history.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from wawindow.dev import samples
from wawindow.ingest.split import split_body

Events = list[tuple[bytes, bytes]]
# what each body of the mix holds: (share in percent, statuses per body; 0: an inbound text)
MIX_2026 = ((70, 1), (20, 0), (8, 5), (2, 50))
STATES = ("sent", "delivered", "read")


def _events(change: dict[str, Any], now: int) -> Iterator[tuple[bytes, bytes]]:
    for event in split_body(samples.encode(samples.body(change)), now * 1000).events:
        yield event.key.encode(), event.encode()


def _ids(u: int, both_ids: bool) -> tuple[str, str | None]:
    return f"1{u:010d}", (f"US.{u:016d}" if both_ids else None)


def mix_2026(bodies: int, users: int, now: int, *, both_ids: bool = True) -> Events:
    """``bodies`` webhook bodies in the 2026 mix (see the module docstring) over ``users``
    users, taken in turn so that each user's events interleave with everyone else's; each
    status moves one of the user's outbound messages on (sent, delivered, read; sent is
    priced), each text is the user writing in."""
    out: Events = []
    statuses_of = [0] * users  # per user, the statuses sent so far
    turn = 0  # the next user
    start = now - 6 * 3600
    pattern = [per_body for share, per_body in MIX_2026 for _ in range(share)]
    for b in range(bodies):
        per_body = pattern[(b * 37) % 100]  # spread the kinds over the run
        t = start + b * 3600 * 5 // bodies
        if per_body == 0:
            wa, bsuid = _ids(turn % users, both_ids)
            message = samples.text_message(f"wamid.in{b}", t, wa_id=wa, user_id=bsuid)
            change = samples.messages_change(
                contacts=[samples.contact(wa, bsuid)], messages=[message]
            )
            turn += 1
        else:
            statuses, contacts = [], []
            for _ in range(per_body):
                u = turn % users
                turn += 1
                wa, bsuid = _ids(u, both_ids)
                n = statuses_of[u]
                statuses_of[u] += 1
                state = STATES[n % 3]
                pricing = samples.pmp_pricing("utility") if state == "sent" else None
                statuses.append(
                    samples.status(
                        f"wamid.out{u}.{n // 3}", state, t, wa_id=wa, user_id=bsuid, pricing=pricing
                    )
                )
                contacts.append(samples.contact(wa, bsuid))
            change = samples.messages_change(contacts=contacts, statuses=statuses)
        out += _events(change, now)
    return out


def history(users: int, facts: int, now: int, rounds: int = 5) -> tuple[Events, Events]:
    """``(load, timed)``: the load gives each of ``users`` conversations ``facts`` facts over
    the last seven days (inbound texts and priced outbound messages in turn, both ids named);
    the timed part then gives each ``rounds`` more exchanges (an inbound text, then a status
    of a reply), users interleaved. The first event of each conversation finds it only in
    Redis; the others find it as the worker wrote it."""
    load: Events = []
    timed: Events = []
    span = 7 * 86_400 - 3600 * (rounds + 1)
    for step in range(facts):
        t = now - 7 * 86_400 + step * span // max(facts, 1)
        for u in range(users):
            wa, bsuid = _ids(u, True)
            if step % 2 == 0:
                item = samples.text_message(f"wamid.h{u}.{step}", t, wa_id=wa, user_id=bsuid)
                change = samples.messages_change(
                    contacts=[samples.contact(wa, bsuid)], messages=[item]
                )
            else:
                pricing = samples.pmp_pricing("utility")
                status = samples.status(
                    f"wamid.h{u}.{step}", "sent", t, wa_id=wa, user_id=bsuid, pricing=pricing
                )
                change = samples.messages_change(
                    contacts=[samples.contact(wa, bsuid)], statuses=[status]
                )
            load += _events(change, now)
    for r in range(rounds):
        t = now - 3600 * (rounds - r)
        for u in range(users):
            wa, bsuid = _ids(u, True)
            message = samples.text_message(f"wamid.t{u}.{r}", t, wa_id=wa, user_id=bsuid)
            timed += _events(
                samples.messages_change(contacts=[samples.contact(wa, bsuid)], messages=[message]),
                now,
            )
        for u in range(users):
            wa, bsuid = _ids(u, True)
            status = samples.status(f"wamid.o{u}.{r}", "sent", t + 60, wa_id=wa, user_id=bsuid)
            timed += _events(
                samples.messages_change(contacts=[samples.contact(wa, bsuid)], statuses=[status]),
                now,
            )
    return load, timed


def classic(users: int, now: int, *, interleave: int = 500) -> list[tuple[bytes, bytes]]:
    """(key, encoded event) in arrival order: per user an inbound message, then a reply with
    sent, delivered and read statuses; every tenth user's statuses arrive twice. Users are
    interleaved as in live traffic: within each block of ``interleave`` users, the first
    event of each, then the second of each, and so on (``interleave=1``: grouped by user)."""
    per_user: list[list[tuple[bytes, bytes]]] = []
    for u in range(users):
        out: list[tuple[bytes, bytes]] = []
        per_user.append(out)
        wa = f"1{u:010d}"
        t = now - 3600 + (u % 1800)
        pricing = samples.pmp_pricing("service", "free_customer_service")
        changes = [
            samples.messages_change(
                contacts=[samples.contact(wa)],
                messages=[samples.text_message(f"wamid.in{u}", t, wa_id=wa)],
            ),
            samples.messages_change(
                statuses=[
                    samples.status(f"wamid.out{u}", "sent", t + 30, wa_id=wa, pricing=pricing),
                    samples.status(f"wamid.out{u}", "delivered", t + 31, wa_id=wa, pricing=pricing),
                    samples.status(f"wamid.out{u}", "read", t + 40, wa_id=wa),
                ]
            ),
        ]
        if u % 10 == 0:
            changes.append(changes[1])
        for change in changes:
            for event in split_body(samples.encode(samples.body(change)), now * 1000).events:
                out.append((event.key.encode(), event.encode()))
    arrivals: list[tuple[bytes, bytes]] = []
    for start in range(0, users, interleave):
        block = per_user[start : start + interleave]
        for k in range(max(len(b) for b in block)):
            arrivals += [b[k] for b in block if k < len(b)]
    return arrivals
