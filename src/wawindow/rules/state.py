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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from wawindow.rules.published import ConversationMark, EntryPointMark, WindowMark


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
        m = cls()  # then what is stored (twice as fast as ``cls(**{...})``)
        for short, value in raw.items():
            setattr(m, _MLONG[short], value)
        return m


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
    # what was published (and counted), by identity (see wawindow.rules.published)
    windows: dict[int, WindowMark] = field(default_factory=dict)  # service windows, by opened
    entry_points: dict[int, EntryPointMark] = field(default_factory=dict)  # by opened
    conversations: dict[str, ConversationMark] = field(default_factory=dict)  # by opener
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
        fits a smaller allocation (docs/performance.md).

        The short names of what is not empty, in the fields' order; spelled out, as in
        :meth:`Message.encode` (each write of a state encodes it whole)."""
        out: dict[str, Any] = {}
        if self.waba_id:
            out["w"] = self.waba_id
        named = _user_of(key)
        if user_id := self.user_id:
            out["u"] = 1 if user_id == named else user_id
        if wa_id := self.wa_id:
            out["a"] = 1 if wa_id == named else wa_id
        if self.inbound:
            out["i"] = self.inbound
        if self.cuts:
            out["x"] = self.cuts
        if self.referrals:
            out["r"] = self.referrals
        if self.messages:
            out["m"] = {k: m.encode() for k, m in self.messages.items()}
        if self.billed:
            out["b"] = self.billed
        if self.decisions:
            out["d"] = {k: [d.at, d.value, d.reason] for k, d in self.decisions.items()}
        if self.applied:
            out["s"] = self.applied
        if self.windows:
            out["pw"] = {str(o): w.encode() for o, w in self.windows.items()}
        if self.entry_points:
            out["pf"] = {str(o): e.encode() for o, e in self.entry_points.items()}
        if self.conversations:
            out["pc"] = {k: c.encode() for k, c in self.conversations.items()}
        if self.opt_outs:
            out["po"] = self.opt_outs
        if self.disagreements:
            out["dg"] = self.disagreements
        if self.linked:
            out["l"] = self.linked
        if self.erased:
            out["e"] = self.erased
        if self.erased_messages:
            out["em"] = self.erased_messages
        return orjson.dumps(out)  # every key a string: OPT_NON_STR_KEYS costs a quarter

    @classmethod
    def decode(cls, raw: bytes | str | None, key: str = "") -> State:
        """The state of a stored document; ``key``: the conversation key it is stored under
        (see :meth:`encode`)."""
        if not raw:
            return cls()
        doc = orjson.loads(raw)
        s = cls()
        for short, value in doc.items():
            read = _READ.get(short)
            if read is not None:
                value = read(value)
            elif value == 1 and short in ("u", "a"):  # the user the key names
                value = _user_of(key)
                if not value:
                    raise ValueError(
                        f"the document names the user of its key, and {key!r} has none"
                    )
            setattr(s, _LONG[short], value)
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


# stored names: every byte counts per conversation (State.encode and Message.encode spell
# them out; decoding reads them here)
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
# how the stored forms that are not the fields' own are read, by stored name
_READ: dict[str, Callable[[Any], Any]] = {
    "m": lambda v: {k: Message.decode(m) for k, m in v.items()},
    "d": lambda v: {k: Decision(int(d[0]), bool(d[1]), str(d[2])) for k, d in v.items()},
    "pw": lambda v: {int(o): WindowMark.decode(w) for o, w in v.items()},
    "pf": lambda v: {int(o): EntryPointMark.decode(e) for o, e in v.items()},
    "pc": lambda v: {k: ConversationMark.decode(c) for k, c in v.items()},
}
