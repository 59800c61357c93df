"""What the tracker knows of one conversation (a business number and a user): the facts the
webhooks brought, and what has already been published and counted.

The rules never keep a running "current window": they keep the facts (when the user wrote,
which business messages were sent and delivered, which decisions the user made, when Meta
said the window was closed) and derive windows and conversations from them (see
:mod:`wawindow.rules.engine`). That is what makes the outcome independent of the order the
webhooks arrive in. What was published is kept beside the facts, so that a change of the
derived truth becomes exactly the transitions and counter moves that tell the world.

Stored as one compact JSON document per conversation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Any

import orjson


@dataclass(slots=True)
class Message:
    """A business message (or, in a group, its delivery to one participant) in the ledger."""

    rank: int = 0  # the furthest status seen: sent 1 < delivered 2 < read 3 < played 4; failed 9
    first: int | None = None  # the earliest status of it that was not a failure (its sending)
    delivered: int | None = None  # the earliest delivered, read or played status
    category: str | None = None  # pricing.category (or None: not learned yet)
    ptype: str | None = None  # pricing.type
    pricing_rank: int | None = None  # the rank of the status the pricing was taken from
    cbp: bool = False  # pricing_model CBP: Meta's conversation ids are conversations
    origin: str | None = None  # conversation.origin.type
    meta_id: str | None = None  # conversation.id
    meta_expires: int | None = None  # conversation.expiration_timestamp
    meta_rank: int | None = None  # the rank of the status the conversation was taken from
    meta_entry_point: bool = False  # Meta said free_entry_point / referral_conversion
    counted: list[Any] | None = None  # [delivered, category, type, billable] as counted

    def encode(self) -> dict[str, Any]:
        """Its stored form: the short names of what is not None, False or 0. Every write of a
        state encodes every message of it, so spelled out: two and a half times faster than
        a loop over the fields. The integers and flags the rules set are tested for truth;
        what came from Meta's pricing and conversation objects may be anything."""
        out: dict[str, Any] = {}
        if self.rank:
            out["r"] = self.rank
        if self.first:
            out["f"] = self.first
        if self.delivered:
            out["d"] = self.delivered
        if _stored(self.category):
            out["c"] = self.category
        if _stored(self.ptype):
            out["t"] = self.ptype
        if self.pricing_rank:
            out["pr"] = self.pricing_rank
        if self.cbp:
            out["cbp"] = self.cbp
        if _stored(self.origin):
            out["o"] = self.origin
        if _stored(self.meta_id):
            out["id"] = self.meta_id
        if _stored(self.meta_expires):
            out["x"] = self.meta_expires
        if self.meta_rank:
            out["mr"] = self.meta_rank
        if self.meta_entry_point:
            out["fep"] = self.meta_entry_point
        if (w := self.counted) is not None:
            out["k"] = w
        return out

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Message:
        return cls(**{_MLONG[k]: v for k, v in raw.items()})


@dataclass(slots=True)
class Decision:
    """The newest opt-out decision of one kind: Meta's time, stop (True) or resume (False)."""

    at: int
    value: bool
    reason: str


@dataclass(slots=True)
class State:
    # who
    waba_id: str | None = None
    user_id: str | None = None
    wa_id: str | None = None
    # facts
    inbound: list[int] = field(default_factory=list)  # user messages and calls, sorted
    cuts: list[int] = field(default_factory=list)  # 131047 failures, sorted
    referrals: list[int] = field(default_factory=list)  # inbound messages from an ad, sorted
    messages: dict[str, Message] = field(default_factory=dict)  # the ledger, by wamid
    # past the history: digest of a counted wamid -> when it was delivered
    billed: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)  # marketing_opt_out, opted_out
    applied: dict[str, int] = field(default_factory=dict)  # event id digest -> wall clock
    # what was published (and counted), by identity
    # service windows: opened -> [expires, closed, warned, corrected at (0: not)]
    windows: dict[int, list[Any]] = field(default_factory=dict)
    # entry point windows: opened -> [expires, closed, source]
    entry_points: dict[int, list[Any]] = field(default_factory=dict)
    # conversations: opener -> [category, initiator, type, source, id, opened, expires, closed]
    conversations: dict[str, list[Any]] = field(default_factory=dict)
    opt_outs: dict[str, bool] = field(default_factory=dict)  # field -> value published
    disagreements: list[str] = field(default_factory=list)  # wamids counted as disagreements
    linked: dict[str, str] = field(default_factory=dict)  # merged key -> its version merged
    # the person was erased up to this Meta time: older events are ignored (0: never)
    erased: int = 0
    # digests of the business messages forgotten then: their late statuses are ignored too
    erased_messages: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.inbound
            or self.messages
            or self.decisions
            or self.billed
            or self.applied
            or self.erased
        )

    def encode(self, key: str = "") -> bytes:
        """The stored document. Given the conversation ``key`` it is stored under, a user id
        or wa_id that the key names is written as ``1`` ("the key's"): the state string then
        fits a smaller allocation (docs/performance.md)."""
        out: dict[str, Any] = {}
        named = _user_of(key)
        for name, short in _PAIRS:
            value = getattr(self, name)
            if not value:
                continue
            if name == "messages":
                value = {k: m.encode() for k, m in self.messages.items()}
            elif name == "decisions":
                value = {k: [d.at, d.value, d.reason] for k, d in self.decisions.items()}
            elif name in ("user_id", "wa_id") and value == named:
                value = 1
            out[short] = value
        return orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)

    @classmethod
    def decode(cls, raw: bytes | str | None, key: str = "") -> State:
        """The state of a stored document; ``key``: the conversation key it is stored under
        (see :meth:`encode`)."""
        if not raw:
            return cls()
        doc = orjson.loads(raw)
        s = cls()
        for short, value in doc.items():
            name = _LONG[short]
            if value == 1 and name in ("user_id", "wa_id"):
                value = _user_of(key)
                if not value:
                    raise ValueError(
                        f"the document names the user of its key, and {key!r} has none"
                    )
            elif name == "messages":
                value = {k: Message.decode(m) for k, m in value.items()}
            elif name == "decisions":
                value = {k: Decision(int(d[0]), bool(d[1]), str(d[2])) for k, d in value.items()}
            elif name in ("windows", "entry_points"):
                value = {int(k): v for k, v in value.items()}
            setattr(s, name, value)
        return s


def _stored(value: Any) -> bool:
    """Whether a field taken from Meta's objects is stored (not None, False or 0)."""
    return value is not None and value is not False and value != 0


def event_digest(event_id: str) -> str:
    """A 48-bit digest of an event id (or a wamid): how an applied event is remembered."""
    return hashlib.sha1(event_id.encode(), usedforsecurity=False).hexdigest()[:12]


def _user_of(key: str) -> str | None:
    """The user a conversation key names (``phone_number_id:user``), if any."""
    user = key.split(":", 1)[1] if ":" in key else ""
    return user or None


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in _FIELDS[type(obj)]}


# each stored class's fields, in order (from the dataclass, not ``__slots__``: the same when
# compiled with mypyc, whose classes have none; see bench/compiled.py)
_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (Message, State)
}


# stored names: every byte counts per conversation
_SHORT = {
    "waba_id": "w", "user_id": "u", "wa_id": "a", "inbound": "i", "cuts": "x", "referrals": "r",
    "messages": "m", "billed": "b", "decisions": "d", "applied": "s", "windows": "pw",
    "entry_points": "pf", "conversations": "pc", "opt_outs": "po", "disagreements": "dg",
    "linked": "l", "erased": "e", "erased_messages": "em",
}  # fmt: skip
_LONG = {v: k for k, v in _SHORT.items()}
_MSHORT = {
    "rank": "r", "first": "f", "delivered": "d", "category": "c", "ptype": "t",
    "pricing_rank": "pr", "cbp": "cbp", "origin": "o", "meta_id": "id", "meta_expires": "x",
    "meta_rank": "mr", "meta_entry_point": "fep", "counted": "k",
}  # fmt: skip
_MLONG = {v: k for k, v in _MSHORT.items()}
# (field, stored name), in the fields' order: what encode walks
_PAIRS = tuple((name, _SHORT[name]) for name in _FIELDS[State])
