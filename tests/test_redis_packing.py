"""Commands packed by hiredis (redis/connection.py): the same bytes redis-py would send."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from tests.conftest import Services, redis_db1
from wawindow.redis.connection import connect, packed_by_hiredis

COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "ww:{7}:c:106540352242922:16505551234"),
    ("EVALSHA", "0" * 40, 2, "k1", b"k2", 1796225414, b'{"w":"1"}', "", -3),
    ("CLIENT SETNAME", "wawindow"),
    (b"SCRIPT LOAD", "return 1"),
    ("SET", "ünïcode key", "välue ✓", "EXAT", 1796225414),
    ("HSET", b"h", b"\x00\xff binary", b"x" * 70_000),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_the_bytes_are_those_redis_py_packs(args: tuple[Any, ...]) -> None:
    theirs = Connection()
    ours = packed_by_hiredis(Connection)()

    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
    assert b"".join(ours.pack_commands([args, args])) == b"".join(
        theirs.pack_commands([args, args])
    )


@pytest.mark.parametrize("bad", [None, True, object()])
def test_what_redis_py_refuses_is_refused(bad: Any) -> None:
    with pytest.raises(DataError):
        packed_by_hiredis(Connection)().pack_command("SET", "k", bad)


@pytest.mark.redis
async def test_clients_pack_with_hiredis_and_talk_to_redis(services: Services) -> None:
    redis = await connect(redis_db1(services))
    assert isinstance(redis, Redis)
    try:
        await redis.set("ww:packing:ü", "välue ✓")
        pipe = redis.pipeline(transaction=False)
        pipe.get("ww:packing:ü")
        pipe.eval("return ARGV[1] .. ARGV[2]", 0, b"\x00\xff", 7)
        got = await pipe.execute()
        connection = await redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        await redis.connection_pool.release(connection)
    finally:
        await redis.delete("ww:packing:ü")
        await redis.aclose()

    assert got == [b"v\xc3\xa4lue \xe2\x9c\x93", b"\x00\xff7"]
    assert type(connection).__name__ == "HiredisConnection"
