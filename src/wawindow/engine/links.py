"""Links between the keys of one user: a wa_id key and a BSUID key, an old number and a new
one. Once linked, the source key's alias (``keys.alias``) points where the user lives.

In 2026 nearly every webhook item names both of a user's ids, so the same pair comes back
with every event. A link is therefore established once per process: :class:`Links` keeps
the pairs it has seen joined, and a batch resolves only the pairs it has not, all of them at
once (one ``MGET`` per alias hop), and writes each alias once (again a day later, to
keep its TTL well ahead).

What the cache holds never splits a user: a link made elsewhere merges the whole user, so
two keys once joined stay joined. Only an erasure takes links apart (it deletes the
aliases), and a merge makes the aliases of other processes point at a key that is no longer
a home (a longer chain, not a split); each then increments the links epoch
(``keys.LINKS_EPOCH``) after its writes, and every process reads the epoch before it trusts
its cache for a batch, dropping it when the epoch moved.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from wawindow import keys
from wawindow.engine.documents import MAX_ALIAS_HOPS, Applied
from wawindow.redis.connection import AnyRedis, get_many, text

# pairs remembered per process (each about 250 bytes)
LINKS_KEPT = 200_000
# an alias this process wrote is written again after this long, to keep its TTL ahead
REWRITE_S = 86_400

# merges ``src`` into ``dst``; returns what to publish and whether ``src`` held anything
Merge = Callable[[str, str, int], Awaitable[tuple[list[Applied], bool]]]


class Links:
    """The links of one process's users: resolved once, written once (module docstring)."""

    def __init__(self, redis: AnyRedis, ttl_s: int, size: int = LINKS_KEPT) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._size = size
        self._epoch: bytes | None = None
        # (source, target) -> when this process last wrote the source's alias (0: never);
        # every pair here was seen joined since the epoch was last read
        self._joined: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._written: OrderedDict[tuple[str, str], int] = OrderedDict()

    async def resolve(self, conversation_keys: Sequence[str]) -> dict[str, str]:
        """Where each key's user lives now: the key itself, or where it was linked to."""
        return {k: chain[-1] for k, chain in (await self._follow(conversation_keys)).items()}

    async def _follow(self, conversation_keys: Sequence[str]) -> dict[str, list[str]]:
        """Each key's chain of aliases, the key first and where it leads last; one command
        per hop for all the keys."""
        chains = {k: [k] for k in conversation_keys}
        pending = list(chains)
        for _ in range(MAX_ALIAS_HOPS):
            if not pending:
                break
            targets = await get_many(self._redis, [keys.alias(chains[k][-1]) for k in pending])
            moved = []
            for k, target in zip(pending, targets, strict=True):
                if target is not None:
                    chains[k].append(text(target))
                    moved.append(k)
            pending = moved
        return chains

    async def link(
        self, pairs: Sequence[tuple[str, str]], now: int, merge: Merge
    ) -> tuple[list[Applied], set[str]]:
        """Make each ``(source, target)`` one user: the source's user (wherever it lives)
        merges into the target's, and the source points at the target from then on. Returns
        what the merges publish and the keys whose alias was written.

        In an order that can be repeated after a crash: merge into the target (the target
        remembers which version of the source it holds, so a repeat merges nothing twice),
        forget the source, then point the source at the target. Pairs are taken in order
        and each sees the links made before it, so a chain of changes ends on one user."""
        wanted = sorted({(s, t) for s, t in pairs if s != t})
        if not wanted:
            return [], set()
        await self._check_epoch()
        todo = [p for p in wanted if not self._trusted(p, now)]
        if not todo:
            return [], set()
        chains = await self._follow(sorted({k for p in todo for k in p}))
        moved: dict[str, str] = {}  # a home this call merged away -> where it went

        def home(key: str) -> str:
            where = chains[key][-1]
            while where in moved:
                where = moved[where]
            return where

        published: list[Applied] = []
        aliases: dict[str, str] = {}
        epoch_moves = False
        # a key that holds nothing has nothing to merge: which do, for the batch at once
        asked = sorted({home(s) for s, t in todo if home(s) != home(t)})
        holding = await self._holding(asked)
        for source, target in todo:
            src, dst = home(source), home(target)
            if src != dst:
                held = False
                if src not in asked or src in holding:
                    merged, held = await merge(src, dst, now)
                    published += merged
                    holding.add(dst)
                epoch_moves |= held  # other processes' aliases may lead to src
                moved[src] = dst
                aliases[src] = dst
            chain = chains[source]
            direct = chain[1] if len(chain) == 2 else None  # the alias, when it leads home
            if source != dst and (
                direct != dst or now - self._written.get((source, target), 0) >= REWRITE_S
            ):
                aliases[source] = dst
        if aliases:
            pipe = self._redis.pipeline(transaction=False)
            for k, dst in aliases.items():
                pipe.set(keys.alias(k), dst, ex=self._ttl_s)
            await pipe.execute()
        if epoch_moves:
            await self.moved()
        for pair in todo:
            if pair[0] in aliases:
                self._remember(self._written, pair, now)
            self._remember(self._joined, pair, now)
        return published, set(aliases)

    async def _holding(self, conversation_keys: Sequence[str]) -> set[str]:
        """Which keys hold a document (one round trip). A document another process writes
        there between this and the alias is the same race as between a merge's read and
        the alias."""
        if not conversation_keys:
            return set()
        pipe = self._redis.pipeline(transaction=False)
        for k in conversation_keys:
            pipe.exists(keys.document_keys(k)[0])
        found = await pipe.execute()
        return {k for k, n in zip(conversation_keys, found, strict=True) if n}

    async def moved(self) -> None:
        """Aliases were deleted or now lead through a key that is no longer a home: every
        process drops what it holds (called after the writes)."""
        await self._redis.incr(keys.LINKS_EPOCH)

    def _trusted(self, pair: tuple[str, str], now: int) -> bool:
        if pair not in self._joined:
            return False
        self._joined.move_to_end(pair)
        return now - self._written.get(pair, 0) < REWRITE_S

    async def _check_epoch(self) -> None:
        epoch = await self._redis.get(keys.LINKS_EPOCH)
        current = epoch if isinstance(epoch, bytes) else str(epoch).encode()
        if current != self._epoch:
            self._joined.clear()
            self._epoch = current

    def _remember(
        self, kept: OrderedDict[tuple[str, str], int], pair: tuple[str, str], now: int
    ) -> None:
        kept[pair] = now
        kept.move_to_end(pair)
        while len(kept) > self._size:
            kept.popitem(last=False)
