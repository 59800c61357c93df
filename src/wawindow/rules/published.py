"""The marks: what was published (and counted) of each service window, free entry point
window and conversation, kept in the state beside the facts (:mod:`wawindow.rules.state`).

:mod:`wawindow.rules.publish` compares them with the truth derived from the facts and
publishes the difference; :mod:`wawindow.rules.fast` reads them as that truth on a settled
state. A window is known by when it opened (its key in ``State.windows`` or
``State.entry_points``), a conversation by the wamid whose delivery opened it (its key in
``State.conversations``).

Each is stored as a JSON array of its fields in the order they are declared here (every byte
counts per conversation): ``closed`` as ``0`` or ``1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class WindowMark:
    """A published service window (opened at its key)."""

    expires: int  # its end, as last published (opened or extended; earlier when it shrank)
    closed: bool = False  # its close was published (it ended on the wall clock)
    # how many closing-soon warnings were published: the offsets (largest first) before this
    # index; 0 again when the window is extended
    warned: int = 0
    # the end counted as a CSW correction (Meta's 131047 ended the window): 0, not corrected
    corrected_at: int = 0

    def encode(self) -> list[int]:
        return [self.expires, 1 if self.closed else 0, self.warned, self.corrected_at]

    @classmethod
    def decode(cls, raw: list[Any]) -> WindowMark:
        return cls(raw[0], bool(raw[1]), raw[2], raw[3])


@dataclass(slots=True)
class EntryPointMark:
    """A published free entry point window (opened at its key)."""

    expires: int  # its end, as last published
    closed: bool  # its close was published
    source: str  # "derived" (from a referral) or "meta" (Meta said so)

    def encode(self) -> list[Any]:
        return [self.expires, 1 if self.closed else 0, self.source]

    @classmethod
    def decode(cls, raw: list[Any]) -> EntryPointMark:
        return cls(raw[0], bool(raw[1]), raw[2])


@dataclass(slots=True)
class ConversationMark:
    """A published conversation (opened by the delivery of the wamid at its key): what it
    was published and counted as (see :class:`wawindow.rules.conversations.Conversation`)."""

    category: str  # marketing, utility, service, referral_conversion, ... (an open set)
    initiator: str  # "user" or "business"
    type: str  # "regular" or "free_entry_point"
    source: str  # "derived" or "meta"
    conversation_id: str | None  # Meta's conversation id (CBP era), if it is Meta's
    opened: int  # the delivery that opened it: what it is counted at
    expires: int  # its end, as last published
    closed: bool = False  # its close was published

    @property
    def dims(self) -> tuple[str, str, str, str]:
        """The dimensions it is counted under (``conversations_opened``)."""
        return (self.category, self.initiator, self.type, self.source)

    def encode(self) -> list[Any]:
        return [
            self.category, self.initiator, self.type, self.source, self.conversation_id,
            self.opened, self.expires, 1 if self.closed else 0,
        ]  # fmt: skip

    @classmethod
    def decode(cls, raw: list[Any]) -> ConversationMark:
        return cls(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], bool(raw[7]))
