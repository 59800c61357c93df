"""Erasure marks: which webhooks belong to an erased person, dropped before they reach any
state (``ww:erased``: keyed hash of ``<waba>|<id>`` -> the time up to which the person was
erased; :mod:`wawindow.keys`). The hashes are the suppression's
(:mod:`wawindow.engine.suppression`): every key of a rotation is asked, the first written.

Every webhook is checked, and nearly every person was checked before: a process remembers
the people it found unmarked, until the epoch (``keys.LINKS_EPOCH``, read with each batch)
moves. Writing a mark moves it, after the mark is written, so a person remembered unmarked
is asked again in the first batch that starts after any erasure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from wawindow import keys
from wawindow.engine.suppression import Suppressions
from wawindow.redis.connection import AnyRedis, text, translated

# people remembered unmarked per process (about 200 bytes each)
UNMARKED_KEPT = 200_000


class ErasureMarks:
    """The erasure marks of one store."""

    def __init__(self, redis: AnyRedis, suppressions: Suppressions, retention_s: int) -> None:
        self._redis = redis
        self._suppressions = suppressions
        self._retention_s = retention_s
        self._hashed = False  # every field of ERASED is a keyed hash (_hash_plain)
        self._epoch: bytes | str | None = None
        # people found unmarked since the epoch was last read (module docstring)
        self._unmarked: set[tuple[str, str]] = set()

    @translated
    async def erased(
        self, events: Sequence[Mapping[str, Any]]
    ) -> Callable[[Mapping[str, Any]], bool]:
        """Which of ``events`` belong to an erased person and are not newer than the erasure
        (two round trips for a batch: the epoch, the people not known unmarked)."""
        people = {p for ev in events for p in person_ids(ev)}
        if not people:
            return lambda _: False
        await self._hash_plain()
        epoch = await self._redis.get(keys.LINKS_EPOCH)
        if epoch != self._epoch or len(self._unmarked) > UNMARKED_KEPT:
            self._unmarked.clear()
            self._epoch = epoch
        people -= self._unmarked
        if not people:
            return lambda _: False
        sup = self._suppressions
        fields = {p: sup.every_digest(*p) for p in people}  # every key's: a rotation
        names = sorted({f for fs in fields.values() for f in fs})
        found = dict(zip(names, await self._redis.hmget(keys.ERASED, names), strict=True))
        up_to = {
            p: max(times)
            for p, fs in fields.items()
            if (times := [int(v) for f in fs if (v := found[f]) is not None])
        }
        self._unmarked.update(p for p in people if p not in up_to)
        if not up_to:
            return lambda _: False

        def erased(ev: Mapping[str, Any]) -> bool:
            ts = ev.get("timestamp")
            return any(
                p in up_to and (not isinstance(ts, int) or ts <= up_to[p]) for p in person_ids(ev)
            )

        return erased

    @translated
    async def mark(self, waba_id: str, ids: Iterable[str], at: int) -> None:
        """Mark ``ids`` of a person at a WABA erased up to ``at`` (a newer mark stays)."""
        await self._hash_plain()
        fields = self._suppressions.digests(waba_id, ids)
        current = await self._redis.hmget(keys.ERASED, fields)
        marks: dict[Any, Any] = {
            f: at for f, c in zip(fields, current, strict=True) if c is None or int(c) < at
        }
        if marks:
            await self._redis.hset(keys.ERASED, mapping=marks)
            await self._redis.incr(keys.LINKS_EPOCH)  # after the mark: see the module docstring

    async def _hash_plain(self) -> None:
        """Once per store: rewrite the plain '<waba>|<id>' fields of ERASED that releases
        before the keyed hashes wrote as keyed hashes (the newest time of each kept)."""
        if self._hashed or await self._redis.get(keys.ERASED_HASHED):
            self._hashed = True
            return
        plain = {
            text(f): int(v)
            for f, v in (await self._redis.hgetall(keys.ERASED)).items()
            if "|" in text(f)
        }
        hashed: dict[str, int] = {}
        for f, at in plain.items():
            waba_id, _, user = f.partition("|")
            d = self._suppressions.digest(waba_id, user)
            hashed[d] = max(at, hashed.get(d, 0))
        current = await self._redis.hmget(keys.ERASED, list(hashed)) if hashed else []
        pipe = self._redis.pipeline(transaction=False)
        for (d, at), c in zip(hashed.items(), current, strict=True):
            if c is None or int(c) < at:
                pipe.hset(keys.ERASED, d, at)
        if plain:
            pipe.hdel(keys.ERASED, *plain)
        pipe.set(keys.ERASED_HASHED, "1", ex=self._retention_s)
        await pipe.execute()
        self._hashed = True


def person_ids(ev: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (WABA, id) pairs an event's person may be erased under."""
    waba, user = ev.get("waba_id"), ev.get("user")
    if not isinstance(waba, str) or not isinstance(user, dict):
        return []
    data = ev.get("data")
    if isinstance(data, dict) and data.get("group_id"):
        return []  # a group's participants are not the conversation's person
    return [(waba, i) for i in (user.get("wa_id"), user.get("user_id")) if isinstance(i, str) and i]
