"""The project's exceptions.

Our exception hierarchy::

    WawindowError
    ├── ConfigError          a setting is missing or malformed; start-up stops
    ├── KafkaUnavailable     Kafka did not acknowledge in time; the webhook answers 503
    ├── RedisUnavailable     Redis refused or did not answer the first connection
    ├── EventRejected        the engine cannot apply an event; it goes to dead-letter
    ├── ServiceStartError    a local Kafka or redis-server could not be started
    ├── StoreConflict        conversations kept changing under an update; the batch is retried
    ├── StoreNotDurable      Redis's replicas or AOF did not confirm a batch in time; retried
    ├── StoreError           Redis failed a command: retriable (full, read-only, failing
    │                        over, connection lost) or not (this document's keys, a script)
    ├── BadInput             a caller's input cannot be taken; the message names what
    │   ├── BadParameter     an API or command parameter (400 naming it)
    │   ├── BadField         a field of a consent change (400 naming it)
    │   └── AnalyticsError   a saved analytics response this tracker cannot read
    └── Unreadable           an item or a body that cannot be read (the receiver's: what of
                             it can be is kept, the rest goes to dead-letter or is refused)

Third-party errors (aiokafka, redis, orjson) are translated into these at the module that
talks to that library, so callers handle one family. ``retriable`` says whether the same
work may succeed when tried again (the worker then retries its batch) or is about the input
(the worker dead-letters it).
"""

from __future__ import annotations


class WawindowError(Exception):
    """Root of every error wawindow raises on purpose."""

    retriable: bool = False  # the same work may succeed when tried again


class ConfigError(WawindowError):
    """A missing or malformed setting; the message is one line naming the variable."""


class KafkaUnavailable(WawindowError):
    """Kafka could not take the events within the configured bound."""

    retriable = True


class RedisUnavailable(WawindowError):
    """Redis could not be reached at start-up (address, TLS, password or ACL)."""


class EventRejected(WawindowError):
    """An event the window engine cannot apply (malformed); the worker dead-letters it."""


class ServiceStartError(WawindowError):
    """Something the process needs to start did not: a local service (Kafka broker or
    redis-server; the message says where its log is) or the HTTP listener."""


class StoreConflict(WawindowError):
    """Conversations kept changing under an update (other processes writing them); the batch
    is tried again."""

    retriable = True


class StoreError(WawindowError):
    """Redis failed a command (translated where Redis is called: :mod:`wawindow.redis`).
    ``retriable``: Redis refused for a while (full, read-only, loading, failing over) or the
    connection failed; otherwise the command itself cannot succeed (a key of another type, a
    script's error), and what it was for is dead-lettered."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class BadInput(WawindowError, ValueError):
    """A caller's input that cannot be taken; the message says what and why."""


class BadParameter(BadInput):
    """A parameter of an API request or a command; ``name`` names it."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


class BadField(BadInput):
    """A field of a consent request that cannot be taken; ``field`` names it."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field


class AnalyticsError(BadInput):
    """A saved analytics file is not a response the reconciliation understands."""


class Unreadable(WawindowError):
    """Something received that cannot be read; the message says which and why."""


class StoreNotDurable(WawindowError):
    """Redis did not confirm, within the bound, that a batch's writes reached its replicas or
    its AOF; the batch is tried again and its offsets are not committed meanwhile."""

    retriable = True
