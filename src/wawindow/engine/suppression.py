"""Suppressions in Redis: what an erasure kept of a person's opt-outs, under keyed hashes
(the rules: :mod:`wawindow.rules.suppression`).

- Each id of an erased person at a WABA has a document ``{ww:n}:s:<waba>:<keyed hash>``,
  written through the one read-decide-write path (:mod:`wawindow.engine.documents`), so two
  writers of the same entry merge instead of losing one.
- The same entry is a record of ``consent-events`` (``kind: "suppression"``, keyed by a hash
  of what it says, so compaction keeps every one): a rebuild from Kafka writes the documents
  again after the records they came from were tombstoned. A record superseded by a newer
  erasure's entry is tombstoned when it is read.
- The key of the hashes (``WAWINDOW_SUPPRESSION_KEY``) is the operator's: a hash of a phone
  number without one is reversed by trying every number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from wawindow import keys
from wawindow.config import Settings
from wawindow.contracts import DAY, DEFAULT_CONSENT_CATEGORIES, ChangeKind
from wawindow.engine.documents import Read
from wawindow.engine.store import WindowStore
from wawindow.errors import ConfigError, EventRejected
from wawindow.redis.connection import text, translated
from wawindow.rules.consent import Decision
from wawindow.rules.suppression import Kept, Suppression, at_erasure, combine, digest


@dataclass(frozen=True, slots=True)
class SuppressionConfig:
    """The secrets of the keyed hashes (the first writes, every one reads: a rotation puts
    the new key first and keeps the old ones after it), how long a webhook-borne opt-out is
    kept after an erasure, and the consent categories an erasure looks at."""

    keys: tuple[bytes, ...]
    keep_s: int = 400 * DAY
    categories: tuple[str, ...] = DEFAULT_CONSENT_CATEGORIES

    def __post_init__(self) -> None:
        if not self.keys or not all(self.keys):
            raise ConfigError("a suppression key cannot be empty")

    @classmethod
    def of(cls, key: bytes) -> SuppressionConfig:
        return cls((key,))

    @classmethod
    def from_settings(cls, settings: Settings) -> SuppressionConfig:
        """From ``WAWINDOW_SUPPRESSION_KEY`` (``new,old,…`` during a rotation)."""
        raw = settings.suppression_key.value if settings.suppression_key is not None else ""
        found = tuple(k.strip().encode() for k in raw.split(",") if k.strip())
        if not found:
            raise ConfigError(
                "WAWINDOW_SUPPRESSION_KEY is required: the secret of the keyed hashes an"
                " erasure keeps, so that a person who opted out is not messaged again"
            )
        return cls(found, settings.suppression_days * DAY, settings.consent_categories)


def record_of(entry: Suppression) -> dict[str, Any]:
    """The ``consent-events`` record of an entry: its id is a hash of what it says."""
    body = entry.body()
    event_id = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return {"kind": ChangeKind.SUPPRESSION.value, "event_id": f"s-{event_id}", **body}


# ids whose keyed hashes are remembered (about 250 bytes each)
DIGESTS_KEPT = 100_000


class Suppressions:
    """Suppression documents: kept at erasure, read by send-check, written again from their
    records on a rebuild."""

    def __init__(self, store: WindowStore, config: SuppressionConfig) -> None:
        self._store = store
        self._redis = store.redis
        self.config = config
        # the hashes of the ids the worker sees with every batch (an HMAC per key each)
        self._hashed: dict[tuple[str, str], list[str]] = {}

    def digest(self, waba_id: str, user: str) -> str:
        """The keyed hash written now (under the first key)."""
        return digest(self.config.keys[0], waba_id, user)

    def digests(self, waba_id: str, users: Iterable[str]) -> list[str]:
        return sorted({self.digest(waba_id, u) for u in users if u})

    def every_digest(self, waba_id: str, user: str) -> list[str]:
        """The keyed hashes of an id under every key (what was written before a rotation);
        the last DIGESTS_KEPT ids' are remembered."""
        found = self._hashed.get((waba_id, user))
        if found is None:
            if len(self._hashed) >= DIGESTS_KEPT:
                self._hashed.clear()  # cheaper than an LRU's bookkeeping on every hit
            found = self._hashed[waba_id, user] = [
                digest(k, waba_id, user) for k in self.config.keys
            ]
        return found

    @translated
    async def entries(self, waba_id: str, users: Iterable[str]) -> list[Suppression]:
        """The entries kept under any of ``users`` (plain ids) at a WABA, newest erasure
        first (one round trip)."""
        found = sorted({d for u in users if u for d in self.every_digest(waba_id, u)})
        if not found:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for d in found:
            pipe.get(keys.document_keys(keys.suppression_key(waba_id, d))[0])
        out: dict[str, Suppression] = {}
        for raw in await pipe.execute():
            if raw:
                entry = Suppression.decode(text(raw).split(" ", 1)[1])
                out.setdefault(orjson.dumps(entry.body()).decode(), entry)
        return sorted(out.values(), key=lambda e: -e.erased_at)

    def at_erasure(
        self,
        waba_id: str,
        erased_at: int,
        users: Iterable[str],
        decisions: Sequence[Decision],
        before: Iterable[Suppression],
    ) -> Suppression:
        return at_erasure(
            waba_id,
            erased_at,
            self.digests(waba_id, users),
            decisions,
            before,
            self.config.categories,
            self.config.keep_s,
        )

    @translated
    async def keep(self, entry: Suppression, now: int) -> tuple[Suppression | None, bool]:
        """Write ``entry`` under each of its digests (merged with what is there); returns
        the entry as kept under the first (None when there is nothing to keep) and whether a
        newer erasure's entry had superseded it everywhere."""
        if entry.empty or entry.waba_id is None:
            return None, False
        waba_id = entry.waba_id
        asked = [keys.suppression_key(waba_id, d) for d in entry.digests]

        def run(r: Read, _: list[str]) -> Kept:
            merged = combine(r.state, entry)
            if merged is None:
                return Kept(r.state, superseded=True)
            return Kept(merged)

        done = await self._store.run(asked, run, now, durable=True, decode=Suppression.decode)
        kept: Suppression | None = None
        superseded = True
        for key in asked:
            result = done[key]
            if isinstance(result, Exception):
                raise EventRejected(f"cannot keep the suppression of {key}: {result}")
            outcome = result[0]
            superseded = superseded and outcome.superseded
            if kept is None and not outcome.superseded:
                kept = outcome.state
        return kept, superseded

    @translated
    async def apply(self, records: Sequence[Mapping[str, Any]], now: int) -> list[str]:
        """Write the entries of ``suppression`` records (a rebuild, or another worker's);
        returns the ids of the records superseded everywhere, to tombstone."""
        stale: list[str] = []
        for rec in records:
            entry = Suppression.of(rec)
            until = entry.keep_until()
            if until and until <= now:  # every opt-out it kept has run its time
                stale.append(str(rec["event_id"]))
                continue
            _, superseded = await self.keep(entry, now)
            if superseded:
                stale.append(str(rec["event_id"]))
        return stale
