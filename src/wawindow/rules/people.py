"""A person at a business (a WABA): their recorded consent decisions and their erasures, as
one pure function ``(person, records, now) -> (person, transitions)``, like the
conversations' rules in :mod:`wawindow.rules.engine`.

- A consent change (a record of ``consent-events``, see :mod:`wawindow.kafka.consent_records`)
  joins the person's history once: its id is a hash of what it says, so a repeated request
  changes nothing. The newest decision per category wins (:mod:`wawindow.rules.consent`),
  whatever order the changes arrive in. Each change applied is published as
  ``consent.changed``, with the category's state on file once it was applied.
- An erasure forgets every decision made up to its time, in whatever order the two arrive:
  a change older than the erasure that arrives after it is forgotten as it comes. The ids
  of forgotten changes are kept (they are hashes, not personal data) so that their Kafka
  records get tombstones. It is published once as ``user.erased``. Decisions made after the
  erasure are a new relationship and are kept.

The document has no expiry: consent lives as long as the person's relationship with the
business (and an erasure as long as the consent topic, which keeps it to stop a replay from
bringing the person back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from wawindow.contracts import ChangeKind, Note, TransitionType
from wawindow.rules.consent import Consent, Decision
from wawindow.rules.engine import EventResult
from wawindow.rules.transitions import CounterChange, Transition, transition_id


@dataclass(slots=True)
class Person:
    waba_id: str | None = None
    user: str | None = None
    history: list[Decision] = field(default_factory=list)  # sorted by (at, id)
    erased: int = 0  # the newest erasure's time (0: never erased)
    erasures: list[str] = field(default_factory=list)  # ids of the erasures applied
    forgotten: list[str] = field(default_factory=list)  # ids of the changes erased

    @property
    def empty(self) -> bool:
        return not (self.history or self.erased)

    @property
    def consent(self) -> Consent:
        return Consent.of(self.history)

    def encode(self, key: str = "") -> bytes:
        """The stored document (``key``, the person's, is not needed: as :class:`State`)."""
        doc: dict[str, Any] = {"w": self.waba_id, "u": self.user}
        if self.history:
            doc["h"] = [
                [d.id, d.category, int(d.opt_in), d.at, d.source, d.wording, d.proof,
                 d.recorded_by, d.recorded_at]
                for d in self.history
            ]  # fmt: skip
        if self.erased:
            doc["e"], doc["ei"], doc["f"] = self.erased, self.erasures, self.forgotten
        return orjson.dumps(doc)

    @classmethod
    def decode(cls, raw: bytes | str | None, key: str = "") -> Person:
        if not raw:
            return cls()
        doc = orjson.loads(raw)
        history = [
            Decision(int(at), bool(opt_in), str(category), str(source), str(wording), str(proof),
                     str(by), id=str(id_), recorded_at=int(recorded_at))
            for id_, category, opt_in, at, source, wording, proof, by, recorded_at
            in doc.get("h", [])
        ]  # fmt: skip
        return cls(
            doc.get("w"),
            doc.get("u"),
            history,
            int(doc.get("e", 0)),
            list(doc.get("ei", [])),
            list(doc.get("f", [])),
        )


@dataclass(slots=True)
class PersonOutcome:
    state: Person
    transitions: list[Transition] = field(default_factory=list)
    counters: list[CounterChange] = field(default_factory=list)  # none: people are not counted
    results: list[EventResult] = field(default_factory=list)
    due: int | None = None
    keep_until: int = 0  # 0: kept without expiry
    tombstones: list[str] = field(default_factory=list)  # consent record keys to tombstone


def apply(
    person: Person, key: str, records: Sequence[Mapping[str, Any]], now: int
) -> PersonOutcome:
    """Apply consent changes and erasures (records already checked, see
    :func:`wawindow.kafka.consent_records.invalid`) to one person, in order."""
    out = PersonOutcome(person)
    for rec in records:
        person.waba_id = person.waba_id or str(rec["waba_id"])
        person.user = person.user or str(rec["user"])
        if rec["kind"] == ChangeKind.ERASURE:
            out.results.append(_erase(person, key, rec, out))
        else:
            out.results.append(_record(person, key, rec, now, out))
    return out


def decision_of(rec: Mapping[str, Any]) -> Decision:
    return Decision(
        int(rec["at"]),
        rec["decision"] == "opt_in",
        str(rec["category"]),
        str(rec.get("source") or ""),
        str(rec.get("wording") or ""),
        str(rec.get("proof") or ""),
        str(rec.get("recorded_by") or ""),
        id=str(rec["event_id"]),
        recorded_at=int(rec.get("recorded_at") or 0),
    )


def _record(
    p: Person, key: str, rec: Mapping[str, Any], now: int, out: PersonOutcome
) -> EventResult:
    d = decision_of(rec)
    if d.at <= p.erased:
        if d.id not in p.forgotten:
            p.forgotten.append(d.id)
        out.tombstones.append(d.id)
        return EventResult(notes=(Note.ERASED,))
    if any(h.id == d.id for h in p.history):
        return EventResult(notes=(Note.DUPLICATE,))
    p.history.append(d)
    p.history.sort(key=lambda h: (h.at, h.id))
    state = p.consent.state(d.category)
    data = {**d.show(), "state": state}
    out.transitions.append(_transition(p, key, TransitionType.CONSENT_CHANGED, d.id, d.at, data))
    return EventResult()


def _erase(p: Person, key: str, rec: Mapping[str, Any], out: PersonOutcome) -> EventResult:
    at, erasure_id = int(rec["at"]), str(rec["event_id"])
    # every time: a crash may have come between the write and the tombstones
    if erasure_id in p.erasures:
        out.tombstones += p.forgotten
        return EventResult(notes=(Note.DUPLICATE,))
    p.erasures.append(erasure_id)
    p.erased = max(p.erased, at)
    p.forgotten += [d.id for d in p.history if d.at <= p.erased and d.id not in p.forgotten]
    p.history = [d for d in p.history if d.at > p.erased]
    out.tombstones += p.forgotten
    if not rec.get("linked"):  # published once, from the id the erasure was asked for
        ids = {str(rec["user"]), *(str(i) for i in rec.get("ids") or () if i)}
        data = {
            "erased_at": at,
            "ids": sorted(ids),
            "recorded_by": str(rec.get("recorded_by") or ""),
        }
        out.transitions.append(
            _transition(p, key, TransitionType.USER_ERASED, erasure_id, at, data)
        )
    return EventResult()


def _transition(
    p: Person, key: str, kind: TransitionType, record_id: str, at: int, data: dict[str, Any]
) -> Transition:
    user = p.user or ""
    is_wa_id = user.isdigit()
    return Transition(
        kind,
        transition_id(key, kind, (record_id,)),
        at,
        key,
        data,
        p.waba_id,
        None,
        None if is_wa_id else user,
        user if is_wa_id else None,
    )
