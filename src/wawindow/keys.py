"""Every Kafka topic name and every Redis key, in one place."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

WEBHOOK_EVENTS = "webhook-events"
WINDOW_EVENTS = "window-events"
DEAD_LETTER = "dead-letter"
CONSENT_EVENTS = "consent-events"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names of one deployment, after ``WAWINDOW_TOPIC_PREFIX``."""

    prefix: str = "wawindow."

    @property
    def webhook_events(self) -> str:
        return self.prefix + WEBHOOK_EVENTS

    @property
    def window_events(self) -> str:
        return self.prefix + WINDOW_EVENTS

    @property
    def dead_letter(self) -> str:
        return self.prefix + DEAD_LETTER

    @property
    def consent_events(self) -> str:
        return self.prefix + CONSENT_EVENTS

    def all(self) -> tuple[str, ...]:
        return (self.webhook_events, self.window_events, self.dead_letter, self.consent_events)


def conversation_key(phone_number_id: str, user: str) -> str:
    """The conversation key ``phone_number_id:user``: Kafka key and Redis hash tag alike."""
    return f"{phone_number_id}:{user}"


#: a group's conversation is keyed ``phone_number_id:group.<group id>``
GROUP_PREFIX = "group."


def group_conversation_key(phone_number_id: str, group_id: str) -> str:
    """A group's conversation key: the window is the group's, never a participant's."""
    return conversation_key(phone_number_id, GROUP_PREFIX + group_id)


def group_of(key: str) -> str | None:
    """The group id of a group's conversation key, else None."""
    user = key.partition(":")[2]
    if not user.startswith(GROUP_PREFIX):
        return None
    return user.removeprefix(GROUP_PREFIX) or None


# -- Redis ------------------------------------------------------------------------------------
#
# Every key carries the hash tag of its *shard* ({ww:<n>}), and a conversation always maps to
# one shard. A conversation's state, its shard's deadline index, outbox and finance counters
# therefore share one Redis Cluster slot, so each update is one atomic Lua call that works
# unchanged on a single Redis and on a Cluster. SHARDS is part of the stored layout: changing
# it needs a migration.

SHARDS = 256
# A shard's deadline index is split into this many parts, each small enough at a million open
# windows (about 61 members) for Redis's compact listpack encoding of a sorted set (up to
# zset-max-listpack-entries, 128 by default): a member there costs its bytes, not a skiplist
# node and a hash entry (about 129 bytes). Part of the stored layout, as SHARDS is.
DEADLINE_PARTS = 64


def shard_of(key: str) -> int:
    """The shard of a conversation key (stable across processes and releases)."""
    return zlib.crc32(key.encode()) % SHARDS


def deadline_part_of(key: str) -> int:
    """The part of its shard's deadline index a key is in (other bits than the shard's)."""
    return (zlib.crc32(key.encode()) >> 8) % DEADLINE_PARTS


def _tag(shard: int) -> str:
    return f"{{ww:{shard}}}"


@dataclass(frozen=True, slots=True)
class ConversationKeys:
    """The Redis keys one update of a conversation touches, all in one slot."""

    key: str
    shard: int

    @classmethod
    def of(cls, key: str) -> ConversationKeys:
        return cls(key, shard_of(key))

    @property
    def state(self) -> str:
        """STRING ``<version> <state document>``: the conversation's facts and what was
        published of them (see :mod:`wawindow.rules.state`)."""
        return f"{_tag(self.shard)}:c:{self.key}"

    @property
    def deadline_part(self) -> str:
        """The part of the shard's deadline index this conversation is in."""
        return deadline_part(self.shard, deadline_part_of(self.key))


def deadline_part(shard: int, part: int) -> str:
    """ZSET: conversation key -> the Unix second of its next warning or close; one of the
    shard's DEADLINE_PARTS parts of its deadline index."""
    return f"{_tag(shard)}:due:{part}"


def deadline_summary(shard: int) -> str:
    """ZSET: part number -> the earliest deadline in that part of the shard's deadline index
    (every part that has a member, and only those): the sweeper asks this, then the parts
    that are due. ``commit.lua`` and ``deadline.lua`` keep it."""
    return f"{_tag(shard)}:dues"


def outbox(shard: int) -> str:
    """HASH: '<conversation key>|<event id>' -> window events not yet acknowledged by Kafka."""
    return f"{_tag(shard)}:out"


def outbox_queue(shard: int) -> str:
    """ZSET: outbox fields by the Unix second they were written (to re-publish stragglers)."""
    return f"{_tag(shard)}:outq"


def counters(shard: int, day: str) -> str:
    """HASH: finance counters of one UTC day ('YYYYMMDD'), fields
    '<quarter hour>|<waba>|<number>|<metric>|<dimensions…>' -> count."""
    return f"{_tag(shard)}:n:{day}"


# STRING: a counter every process reads before it trusts the links and the unmarked people it
# has cached; incremented after aliases are deleted (an erasure) or come to lead through a
# merged key (engine/links.py), and after an erasure mark is written (engine/marks.py)
LINKS_EPOCH = "ww:links:epoch"


def alias(key: str) -> str:
    """STRING: the conversation key this (older) key's user now lives under."""
    return f"{_tag(shard_of(key))}:a:{key}"


def person_key(waba_id: str, user: str) -> str:
    """A person at a business: ``k:<waba>:<user>``, the key of their consent and erasure (a
    person consents to a business, not to one of its numbers). Never a conversation key,
    which starts with a phone number id."""
    return f"k:{waba_id}:{user}"


@dataclass(frozen=True, slots=True)
class PersonKeys:
    """The Redis keys of one person at one WABA, all in one slot."""

    key: str
    shard: int

    @classmethod
    def of(cls, waba_id: str, user: str) -> PersonKeys:
        key = person_key(waba_id, user)
        return cls(key, shard_of(key))

    @property
    def state(self) -> str:
        """STRING ``<version> <document>``: the person's consent history and erasures (see
        :mod:`wawindow.rules.people`); no expiry: consent lives as long as the relationship."""
        return f"{_tag(self.shard)}:{self.key}"


def suppression_key(waba_id: str, digest: str) -> str:
    """What an erasure kept of one id of a person at a WABA: ``s:<waba>:<keyed hash>`` (see
    :mod:`wawindow.rules.suppression`); never a plain id."""
    return f"s:{waba_id}:{digest}"


def document_keys(key: str) -> tuple[str, int]:
    """The state key and shard of a stored document: a conversation, a person or a
    suppression (STRING ``<version> <document>``; a person's or a suppression's kept without
    expiry, or as long as its opt-outs would have been)."""
    if key.startswith(("k:", "s:")):
        shard = shard_of(key)
        return f"{_tag(shard)}:{key}", shard
    k = ConversationKeys.of(key)
    return k.state, k.shard


#: HASH: the keyed hash of '<waba>|<user id>' (:func:`wawindow.rules.suppression.digest`)
#: -> the Unix second up to which that person was erased; older webhooks of theirs are
#: dropped before they reach any state (kept as long as the erasure records of
#: consent-events: for ever). Releases before the keyed hashes wrote the plain
#: '<waba>|<user id>': the worker rewrites those once (ERASED_HASHED marks it done)
ERASED = "ww:erased"

#: STRING: set once every field of ERASED is a keyed hash
ERASED_HASHED = "ww:erased:hashed"

#: HASH: phone number id -> its WABA, for every number the worker has seen; how a person's
#: conversations are found at erasure, and a number's WABA for consent
NUMBERS = "ww:numbers"


#: STRING: set once every number of NUMBERS is in its WABA's set (waba_numbers)
NUMBERS_INDEXED = "ww:numbers:indexed"


def waba_numbers(waba_id: str) -> str:
    """SET: the phone number ids seen under one WABA (NUMBERS the other way round, which
    stays the truth when a number moves to another WABA): a WABA's numbers without reading
    every number of every WABA."""
    return f"ww:numbers:{waba_id}"
