"""Suppression: an erased person's opt-outs outlive the erasure, so that erasing a person
never makes the business message them again.

- **What is kept.** At erasure, the opt-outs in force then, stripped of everything but when
  the person decided, the category and where the decision came from (no wording, proof or
  who recorded it), under a keyed hash of each of the person's ids at the WABA (see
  :func:`digest`: a plain hash of a phone number is reversed by trying every number):

  - ``webhook``: what send-check refuses under every consent policy, from the webhooks:
    ``all`` for an opt-out keyword (STOP: every template), ``marketing`` for a
    ``user_preferences`` stop or a 131050 failure (marketing templates);
  - ``consent``: what it refuses under ``enforce``: per category, the opt-out that decided it
    (any source: the API, a keyword, ``user_preferences``, 131050), and ``categories``, the
    categories that were looked at (one named later answers to ``all``).

- **Lifted** for a category by a newer opt-in for that category or ``all`` from any source
  (recorded through the API, a ``resume``, a ``signup``): decided when asked, from the
  decisions on file after the erasure.
- **Erased again.** A later erasure keeps what was still in force (not lifted) with what the
  person decided since: the entry of the newest erasure replaces the older ones. Entries of
  the same erasure merge (newest per category): a replayed or rebuilt erasure that finds less
  on file takes nothing away.
- **Kept** as long as the opt-out would have been: one borne by a webhook lives in a
  conversation's state ``keep_s`` after the erasure (``WAWINDOW_SUPPRESSION_DAYS``), one
  recorded through the API without expiry, as the person's consent.

Pure: no I/O. The entry is a record of ``consent-events`` (``kind: "suppression"``) as well
as a stored document, so a rebuild from Kafka finds it after the records it came from were
tombstoned (see :mod:`wawindow.engine.people`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from wawindow.rules.consent import ALL, Consent, Decision
from wawindow.rules.transitions import CounterChange, Transition

#: the sources of the opt-outs webhooks bring, and the reason send-check gives for each
WEBHOOK_REASONS = {
    "whatsapp_keyword": "opted_out",
    "user_preferences": "marketing_opted_out",
    "meta_131050": "marketing_opted_out",
}
#: the reason of an opt-out the business recorded (API, import)
RECORDED_REASON = "opted_out_of_category"
#: the webhook-borne opt-outs send-check honours under every policy: category -> sources
WEBHOOK_CATEGORIES = {ALL: ("whatsapp_keyword",), "marketing": ("user_preferences", "meta_131050")}


def digest(key: bytes, waba_id: str, user: str) -> str:
    """The keyed hash of one id of a person at a WABA (HMAC-SHA256, 128 bits in hex)."""
    return hmac.new(key, f"{waba_id}|{user}".encode(), hashlib.sha256).hexdigest()[:32]


def reason_of(source: str) -> str:
    return WEBHOOK_REASONS.get(source, RECORDED_REASON)


@dataclass(frozen=True, slots=True)
class Held:
    """One opt-out kept: when the person decided, where it came from, and until when it is
    kept (0: without expiry)."""

    at: int
    source: str
    until: int = 0

    def live(self, now: int) -> bool:
        return not self.until or now < self.until

    def encode(self) -> list[Any]:
        return [self.at, self.source, self.until]

    @classmethod
    def decode(cls, raw: Sequence[Any]) -> Held:
        at, source, until = raw
        return cls(int(at), str(source), int(until))


@dataclass(slots=True)
class Suppression:
    """The opt-outs an erasure of a person at a WABA kept (see the module docstring)."""

    waba_id: str | None = None
    erased_at: int = 0  # the erasure's time (0: none)
    digests: list[str] = field(default_factory=list)  # the keyed hashes of the person's ids
    webhook: dict[str, Held] = field(default_factory=dict)  # "all" / "marketing" -> held
    consent: dict[str, Held] = field(default_factory=dict)  # category -> the deciding opt-out
    categories: list[str] = field(default_factory=list)  # the categories looked at

    @property
    def empty(self) -> bool:
        return not (self.webhook or self.consent)

    def keep_until(self) -> int:
        """When the entry may be forgotten (0: never)."""
        helds = [*self.webhook.values(), *self.consent.values()]
        if not helds or any(not h.until for h in helds):
            return 0
        return max(h.until for h in helds)

    def refusing(
        self, policy: str, checked: str, category: str, since: Iterable[Decision], now: int
    ) -> str | None:
        """The reason this entry refuses a template of ``category`` (checked as ``checked``,
        an operator's finer category, under ``enforce``) under ``policy``, given the
        decisions on file ``since`` the erasure; None when it does not (or is lifted)."""
        later = list(since)
        if policy == "enforce":
            for c in dict.fromkeys((checked, category)):
                held = self._consent_held(c)
                if held is not None and held.live(now) and not _lifted(held, c, later):
                    return reason_of(held.source)
            return None
        for c in (ALL, category):
            held = self.webhook.get(c)
            if held is not None and held.live(now) and not _lifted(held, category, later):
                return reason_of(held.source)
        return None

    def _consent_held(self, category: str) -> Held | None:
        if category in self.consent:
            return self.consent[category]
        if category in self.categories:
            return None  # looked at, and not opted out then
        return self.consent.get(ALL)

    # -- the stored document and the record ------------------------------------------------

    def body(self) -> dict[str, Any]:
        """What the document and the ``consent-events`` record say (no plain id)."""
        return {
            "waba_id": self.waba_id,
            "erased_at": self.erased_at,
            "digests": self.digests,
            "webhook": {c: h.encode() for c, h in sorted(self.webhook.items())},
            "consent": {c: h.encode() for c, h in sorted(self.consent.items())},
            "categories": self.categories,
        }

    def encode(self, key: str = "") -> bytes:
        return orjson.dumps(self.body())

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Suppression:
        return cls(
            doc.get("waba_id"),
            int(doc.get("erased_at") or 0),
            [str(d) for d in doc.get("digests") or ()],
            {str(c): Held.decode(h) for c, h in (doc.get("webhook") or {}).items()},
            {str(c): Held.decode(h) for c, h in (doc.get("consent") or {}).items()},
            [str(c) for c in doc.get("categories") or ()],
        )

    @classmethod
    def decode(cls, raw: bytes | str | None, key: str = "") -> Suppression:
        return cls.of(orjson.loads(raw)) if raw else cls()


def at_erasure(
    waba_id: str,
    erased_at: int,
    digests: Iterable[str],
    decisions: Sequence[Decision],
    before: Iterable[Suppression],
    categories: Iterable[str],
    keep_s: int,
) -> Suppression:
    """The entry an erasure at ``erased_at`` leaves: the opt-outs in force among
    ``decisions`` (recorded and webhook-borne, all the person's ids), and those of the
    entries ``before`` it that were still in force (not lifted by a newer opt-in)."""
    out = Suppression(waba_id, erased_at, sorted(set(digests)))
    consent = Consent.of([d for d in decisions if d.at <= erased_at])
    looked_at = {*categories, ALL, *(d.category for d in decisions)}
    until_webhook = erased_at + keep_s
    for c in sorted(looked_at):
        d = consent.deciding(c)
        if d is not None and not d.opt_in:
            out.consent[c] = Held(
                d.at, d.source, until_webhook if d.source in WEBHOOK_REASONS else 0
            )
    for c, sources in WEBHOOK_CATEGORIES.items():
        # as a conversation keeps them: the newest webhook decision of its kind wins
        borne = [d for d in decisions if d.source in sources and d.at <= erased_at]
        newest = max(borne, key=lambda d: (d.at, not d.opt_in), default=None)
        if newest is not None and not newest.opt_in:
            out.webhook[c] = Held(newest.at, newest.source, until_webhook)
    out.categories = sorted(looked_at)
    for old in before:
        out = merge(out, carried(old, decisions, erased_at))
    return out


def carried(old: Suppression, decisions: Sequence[Decision], now: int) -> Suppression:
    """What of an older entry is still in force at ``now``: neither expired nor lifted by a
    decision since its erasure."""
    later = [d for d in decisions if d.at > old.erased_at]
    kept = Suppression(old.waba_id, old.erased_at, list(old.digests))
    kept.webhook = {
        c: h for c, h in old.webhook.items() if h.live(now) and not _lifted(h, c, later)
    }
    kept.consent = {
        c: h for c, h in old.consent.items() if h.live(now) and not _lifted(h, c, later)
    }
    kept.categories = list(old.categories)
    return kept


def merge(a: Suppression, b: Suppression) -> Suppression:
    """Two entries as one: the newer erasure's time, every id's digest, and per category the
    newer opt-out (an older erasure's entry is passed through :func:`carried` first)."""
    return Suppression(
        a.waba_id or b.waba_id,
        max(a.erased_at, b.erased_at),
        sorted({*a.digests, *b.digests}),
        _newest(a.webhook, b.webhook),
        _newest(a.consent, b.consent),
        sorted({*a.categories, *b.categories}),
    )


def combine(stored: Suppression, incoming: Suppression) -> Suppression | None:
    """The document once ``incoming`` (an erasure's entry, or its record read back) meets
    what is ``stored``; None when ``incoming`` was superseded by a newer erasure's entry
    (which kept what of it was still in force)."""
    if stored.erased_at > incoming.erased_at:
        return None
    if stored.erased_at < incoming.erased_at:
        return incoming
    return merge(stored, incoming)


@dataclass(slots=True)
class Kept:
    """What :func:`combine` made of a stored suppression, to be written back (the shape the
    one read-decide-write path takes: no window events, counters or deadlines)."""

    state: Suppression
    superseded: bool = False
    transitions: list[Transition] = field(default_factory=list)
    counters: list[CounterChange] = field(default_factory=list)
    due: int | None = None
    keep_until: int = 0  # 0: without expiry

    def __post_init__(self) -> None:
        self.keep_until = self.state.keep_until()


def _newest(a: Mapping[str, Held], b: Mapping[str, Held]) -> dict[str, Held]:
    """Per category the newer opt-out; at the same second the one kept longer (and, for an
    order that never depends on which came first, the source)."""
    out = dict(a)
    for c, h in b.items():
        if c not in out or _rank(h) > _rank(out[c]):
            out[c] = h
    return out


def _rank(h: Held) -> tuple[int, bool, int, str]:
    return (h.at, h.until == 0, h.until, h.source)


def _lifted(held: Held, category: str, later: Iterable[Decision]) -> bool:
    """Whether an opt-in for ``category`` or ``all`` is newer than ``held``."""
    return any(d.opt_in and d.at > held.at and d.category in (category, ALL) for d in later)
