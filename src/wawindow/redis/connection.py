"""The Redis boundary: one way to connect (a cluster client for a Redis Cluster node), with
every call bounded and retried on a dropped connection, and which Redis errors pass."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlparse

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    DataError,
    MasterDownError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wawindow.errors import RedisUnavailable, StoreError
from wawindow.kafka.connection import tls_context

AnyRedis = Redis | RedisCluster

# Every Redis call is bounded, a pooled connection is checked before use after a pause, and a
# call that meets a dropped connection (a Redis restarted since) is retried on a new one.
REDIS_OPTIONS: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "health_check_interval": 15,
}


#: The least the service needs of Redis, as an ACL rule: its own keys (every key it writes
#: starts with ``{ww:`` or ``ww:``), and the commands it sends, inside its scripts too. Give
#: a user of the worker and API ``ACL SETUSER wawindow on ><password> `` + this (and, on
#: Redis 7.2 or later, + REDIS_ACL_SINCE_7_2).
REDIS_ACL = (
    "resetkeys ~{ww:* ~ww:* resetchannels -@all "
    "+ping +info +select +client|setname "
    "+get +mget +set +del +exists +incrby +hset +hget +hmget +hgetall +hdel +hincrby "
    "+zadd +zrem +zrange +zrangebyscore +zcard +sadd +smembers +expire +expireat "
    "+evalsha +script|load +wait +cluster|slots +cluster|shards +cluster|nodes +readonly"
)
#: and on Redis 7.2 or later (or Valkey), which know these commands
REDIS_ACL_SINCE_7_2 = "+client|setinfo +waitaof"


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3)


@dataclass(frozen=True, slots=True)
class RedisTLS:
    """TLS to Redis (``rediss://``): a CA bundle (default: the system's) and, for mutual
    TLS, a client certificate and key. The server's name is always verified."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def options(self, url: str) -> dict[str, Any]:
        if not url.startswith("rediss://"):
            return {}
        out: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if self.ca_file:
            out["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            out["ssl_certfile"], out["ssl_keyfile"] = self.cert_file, self.key_file
        return out

    def check(self, url: str) -> None:
        """Read the files now, for a ``rediss://`` URL: one that cannot be used stops start-up
        with one line naming its setting (redis-py would say so only on the first call)."""
        if url.startswith("rediss://"):
            tls_context("WAWINDOW_REDIS_SSL_", self.ca_file, self.cert_file, self.key_file)


@dataclass(frozen=True, slots=True)
class Sentinels:
    """Redis Sentinel: where the Sentinels are and the name of the master they watch. The
    client asks them for the master, and again after a failover."""

    addresses: tuple[tuple[str, int], ...]
    master: str


class _PackedByHiredis:
    """A connection whose commands hiredis packs, in C: redis-py's asyncio connections pack
    every argument in Python, which was a quarter of the worker's time (docs/performance.md).
    The bytes are the same; what hiredis cannot pack (None, a bool) is refused as redis-py
    refuses it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):  # "CLIENT SETNAME": the words go as separate arguments
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(f"cannot send {args[1:]!r} to Redis: {exc}") from None


_PACKED: dict[type, type] = {}


def packed_by_hiredis(connection_class: type) -> type:
    """``connection_class`` with :class:`_PackedByHiredis` packing (one subclass per class)."""
    found = _PACKED.get(connection_class)
    if found is None:
        found = _PACKED[connection_class] = type(
            f"Hiredis{connection_class.__name__}", (_PackedByHiredis, connection_class), {}
        )
    return found


def _fast_packing(client: Redis) -> Redis:
    pool = client.connection_pool
    pool.connection_class = packed_by_hiredis(pool.connection_class)
    return client


def _from_sentinels(url: str, sentinels: Sentinels, options: dict[str, Any]) -> Redis:
    parsed = urlparse(url)
    db = int(parsed.path.lstrip("/") or 0) if parsed.path.lstrip("/").isdigit() else 0
    auth: dict[str, Any] = {
        "username": unquote(parsed.username or "") or None,
        "password": unquote(parsed.password or "") or None,
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        list(sentinels.addresses),
        sentinel_kwargs={k: v for k, v in options.items() if k != "health_check_interval"},
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **options,
    )
    master: Redis = sentinel.master_for(sentinels.master, db=db, **auth)
    return _fast_packing(master)


async def connect(
    url: str, tls: RedisTLS | None = None, sentinels: Sentinels | None = None
) -> AnyRedis:
    """A client for ``url``: a cluster client when the server is a Redis Cluster node; the
    master the ``sentinels`` name (``url`` then gives only the database and the user)."""
    options = {**REDIS_OPTIONS, **(tls or RedisTLS()).options(url)}
    if sentinels is not None:
        client = _from_sentinels(url, sentinels, options)
        try:
            await client.ping()
        except RedisError as exc:
            await client.aclose()
            where = ",".join(f"{h}:{p}" for h, p in sentinels.addresses)
            raise RedisUnavailable(
                f"no Redis master {sentinels.master!r} from the Sentinels at {where}: {exc}"
            ) from None
        return client
    client = _fast_packing(
        Redis.from_url(
            url, retry=_retry(), retry_on_error=[RedisConnectionError, RedisTimeoutError],
            **options,
        )
    )  # fmt: skip
    try:
        info = await client.info("cluster")
    except RedisError as exc:
        await client.aclose()
        where = url.rsplit("@", 1)[-1].split("://", 1)[-1]  # never the password
        raise RedisUnavailable(f"cannot reach Redis at {where}: {exc}") from None
    if info.get("cluster_enabled") in (1, "1"):
        await client.aclose()
        return RedisCluster.from_url(url, retry=_retry(), **options)
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


def store_error(exc: RedisError | OSError) -> StoreError:
    """``exc`` in the project's error tree: retriable unless Redis refused the command itself."""
    retriable = not isinstance(exc, RedisError) or transient(exc)
    return StoreError(f"Redis: {type(exc).__name__}: {exc}", retriable=retriable)


P = ParamSpec("P")
R = TypeVar("R")


def translated(call: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An operation that talks to Redis, raising :class:`StoreError` instead of redis-py's
    errors (and a dropped socket's ``OSError``): its callers see only the project's errors."""

    @functools.wraps(call)
    async def translating(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await call(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise store_error(exc) from exc

    return translating


async def get_many(redis: AnyRedis, names: Sequence[str]) -> list[Any]:
    """``GET`` of each name, in one ``MGET`` on a single Redis (one ``MGET`` per slot on a
    Cluster, whose keys lie in many slots); None where a name holds nothing."""
    if not names:
        return []
    if isinstance(redis, RedisCluster):
        return list(await redis.mget_nonatomic(names))
    return list(await redis.mget(names))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
