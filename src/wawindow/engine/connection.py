"""The Redis boundary: one way to connect (a cluster client for a Redis Cluster node), with
every call bounded and retried on a dropped connection, and which Redis errors pass."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

AnyRedis = Redis | RedisCluster

# Every Redis call is bounded, a pooled connection is checked before use after a pause, and a
# call that meets a dropped connection (a Redis restarted since) is retried on a new one.
REDIS_OPTIONS: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "health_check_interval": 15,
}


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3)


async def connect(url: str) -> AnyRedis:
    """A client for ``url``: a cluster client when the server is a Redis Cluster node."""
    client = Redis.from_url(
        url, retry=_retry(), retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **REDIS_OPTIONS,
    )  # fmt: skip
    try:
        info = await client.info("cluster")
    except RedisError:
        await client.aclose()
        raise
    if info.get("cluster_enabled") in (1, "1"):
        await client.aclose()
        return RedisCluster.from_url(url, retry=_retry(), **REDIS_OPTIONS)
    return client


_TRANSIENT_ERRORS = (
    RedisConnectionError, RedisTimeoutError, OutOfMemoryError, ReadOnlyError, BusyLoadingError,
    TryAgainError, ClusterDownError, MasterDownError, MovedError, AskError,
)  # fmt: skip
_TRANSIENT_PREFIXES = (
    "OOM", "READONLY", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
)  # fmt: skip


def transient(exc: RedisError) -> bool:
    """A refusal by Redis that passes (as opposed to a script failing on a bad event)."""
    return isinstance(exc, _TRANSIENT_ERRORS) or str(exc).startswith(_TRANSIENT_PREFIXES)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
