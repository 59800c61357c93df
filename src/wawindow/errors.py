"""The project's exceptions.

Our exception hierarchy::

    WawindowError
    ├── ConfigError          a setting is missing or malformed; start-up stops
    ├── KafkaUnavailable     Kafka did not acknowledge in time; the webhook answers 503
    ├── RedisUnavailable     Redis refused or did not answer the first connection
    ├── EventRejected        the engine cannot apply an event; it goes to dead-letter
    ├── ServiceStartError    a local Kafka or redis-server could not be started
    ├── StoreConflict        conversations kept changing under an update; the batch is retried
    └── StoreNotDurable      Redis's replicas or AOF did not confirm a batch in time; retried

Third-party errors (aiokafka, redis, orjson) are translated into these at the module that
talks to that library, so callers handle one family.
"""

from __future__ import annotations


class WawindowError(Exception):
    """Root of every error wawindow raises on purpose."""


class ConfigError(WawindowError):
    """A missing or malformed setting; the message is one line naming the variable."""


class KafkaUnavailable(WawindowError):
    """Kafka could not take the events within the configured bound."""


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


class StoreNotDurable(WawindowError):
    """Redis did not confirm, within the bound, that a batch's writes reached its replicas or
    its AOF; the batch is tried again and its offsets are not committed meanwhile."""
