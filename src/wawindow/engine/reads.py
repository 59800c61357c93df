"""What this process last wrote of each conversation, so that its next batch need not read it.

A worker owns its Kafka partitions, so the conversations of its batches are almost always
ones it wrote itself a moment ago. The store keeps what it wrote (the key the user lives
under, the version, the document and its state decoded, the window events still waiting in
the outbox) and, for a conversation found here, skips ``read.lua`` and the decoding and goes
straight to ``commit.lua``: one round trip per batch instead of two. What is kept is bounded
in bytes (``WAWINDOW_WORKER_CACHE_MB``), the least recently used forgotten first.

Nothing here is trusted: ``commit.lua`` is given the whole stored string the rules ran on
and writes only if Redis still holds exactly that, and only if the user was not linked to
another key since. When anything else wrote the conversation (a sweeper, an erasure, a link,
a merge, another worker after a rebalance, Redis losing writes or the key expiring and a
version number coming back), the write is refused, the entry is dropped and the
conversation is read from Redis and run again. The outbox entry is
remembered exactly as ``read.lua`` would return it, until :meth:`Reads.acknowledged`, so a
batch retried after a failed publish publishes its window events again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wawindow.rules.state import State
from wawindow.rules.transitions import Transition

# what is remembered per process, in bytes: an entry is counted as its document, its state
# decoded (about six times the document's bytes) and its bookkeeping
READS_BYTES = 256 * 2**20
DECODED_FACTOR = 7
ENTRY_BYTES = 400


def cost(document: bytes) -> int:
    """The bytes an entry is counted as (see READS_BYTES)."""
    return DECODED_FACTOR * len(document) + ENTRY_BYTES


@dataclass(slots=True)
class Kept:
    """One conversation as this process wrote it last."""

    key: str  # where the user lives (the asked key, or the one it is linked to)
    version: str
    document: bytes
    pending: list[tuple[str, list[Transition]]]  # (outbox field, window events) unacknowledged
    # the document decoded: the rules change it in place, so a run that is not written
    # (a conflict, an error, a batch retried) must forget it
    state: State


class Reads:
    """The last writes of this process, the least recently used forgotten first."""

    def __init__(self, budget: int = READS_BYTES) -> None:
        self._budget = budget
        self._used = 0
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self._by_field: dict[str, set[str]] = {}  # outbox field -> asked keys it is pending for
        self._by_home: dict[str, set[str]] = {}  # where a user lives -> the asked keys kept

    def get(self, asked: str) -> Kept | None:
        kept = self._kept.get(asked)
        if kept is not None:
            self._kept.move_to_end(asked)
        return kept

    def wrote(
        self,
        asked: Sequence[str],
        key: str,
        version: str,
        document: bytes,
        outbox: tuple[str, list[Transition]] | None,
        state: State,
    ) -> None:
        """``commit.lua`` wrote ``document`` (``state`` encoded) as ``version`` of ``key`` for
        ``asked``; its window events wait in the outbox under ``outbox`` (None: it wrote
        none)."""
        pending = [outbox] if outbox is not None else []
        for a in asked:
            self._drop(a)
            self._kept[a] = Kept(key, version, document, pending, state)
            self._by_home.setdefault(key, set()).add(a)
            self._used += cost(document)
            if outbox is not None:
                self._by_field.setdefault(outbox[0], set()).add(a)
        while self._used > self._budget and self._kept:
            self._drop(next(iter(self._kept)))

    @property
    def used(self) -> int:
        """The bytes the entries are counted as."""
        return self._used

    def forget_homes(self, homes: Iterable[str]) -> None:
        """Users no longer live at these keys (a link merged them away): forget every key
        kept as living there, whichever key it was asked by."""
        for home in homes:
            for a in list(self._by_home.get(home, ())):
                self._drop(a)

    def forget(self, asked: Iterable[str]) -> None:
        """Another process wrote these (or the write failed): read them from Redis again."""
        for a in asked:
            self._drop(a)

    def acknowledged(self, fields: Iterable[str]) -> None:
        """Kafka has the window events of these outbox fields: they are no longer pending."""
        for field in fields:
            for a in self._by_field.pop(field, ()):
                kept = self._kept.get(a)
                if kept is not None:
                    kept.pending = []

    def _drop(self, asked: str) -> None:
        kept = self._kept.pop(asked, None)
        if kept is not None:
            self._used -= cost(kept.document)
            same_home = self._by_home.get(kept.key)
            if same_home is not None:
                same_home.discard(asked)
                if not same_home:
                    del self._by_home[kept.key]
        if kept is not None and kept.pending:
            waiting = self._by_field.get(kept.pending[0][0])
            if waiting is not None:
                waiting.discard(asked)
                if not waiting:
                    del self._by_field[kept.pending[0][0]]
