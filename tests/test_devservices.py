"""The local services tool: real processes, real client round trips, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from tests.conftest import Services
from wawindow.config import cache_dir
from wawindow.devservices.broker import fetch_jars, format_storage
from wawindow.devservices.stack import LocalServices
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics


def _running(pid: int | None) -> bool:
    return pid is not None and Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


def test_start_and_stop_leave_no_process_and_no_data(tmp_path: Path) -> None:
    services = LocalServices.create(cache_dir())
    services.start()
    pids = (services.kafka.pid, services.redis.pid)
    run_dir = services.run_dir
    assert all(_running(pid) for pid in pids)

    services.stop()

    states = {pid: _state(pid) for pid in pids if pid is not None}
    assert not any(_running(pid) for pid in pids), f"still running after stop: {states}"
    left = sorted(str(p) for p in run_dir.rglob("*")) if run_dir.exists() else []
    assert not run_dir.exists(), f"left behind: {left[:20]}"


async def test_redis_answers_a_real_round_trip(services: Services) -> None:
    client = aioredis.Redis.from_url(services.redis_url)
    try:
        await client.set("wawindow:test:ping", "pong", ex=10)

        assert await client.get("wawindow:test:ping") == b"pong"
    finally:
        await client.aclose()


async def test_topics_create_is_idempotent_with_the_requested_partitions(
    services: Services, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)

    first = await create_topics(services.kafka_bootstrap, topics, partitions=4)
    again = await create_topics(services.kafka_bootstrap, topics, partitions=4)

    assert sorted(r.name for r in first) == sorted(topics.all())
    assert all(r.created and r.partitions == 4 and r.replication_factor == 1 for r in first)
    assert not any(r.created for r in again)


def test_a_cluster_id_that_begins_with_a_dash_still_formats(tmp_path: Path) -> None:
    """One random cluster id in 64 begins with ``-``; the storage tool must not read it as an
    option (it did, and a broker start failed once in that many)."""
    data = tmp_path / "data"
    properties = tmp_path / "server.properties"
    properties.write_text(
        "process.roles=broker,controller\nnode.id=1\n"
        "controller.quorum.bootstrap.servers=127.0.0.1:1\n"
        "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:1\n"
        "controller.listener.names=CONTROLLER\n"
        f"log.dirs={data}\n"
    )

    format_storage(fetch_jars(cache_dir()), properties, "-Ab3dEfGhIjKlMnOpQrStUw")

    assert (data / "meta.properties").read_text().count("cluster.id=-Ab3dEfGhIjKlMnOpQrStUw") == 1


def test_a_port_is_never_given_out_twice() -> None:
    from wawindow.devservices.process import free_port

    ports = [free_port() for _ in range(300)]

    assert len(set(ports)) == len(ports)
