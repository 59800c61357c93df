"""Fixtures: one real Kafka broker and one real redis-server for the whole session, started by
the project's own tool, and per-test topic prefixes so tests never see each other's records.

Set WAWINDOW_TEST_KAFKA_BOOTSTRAP and WAWINDOW_TEST_REDIS_URL (for example from
``wawindow services up``) to reuse services that are already running.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hypothesis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.apps import create_app
from wawindow.config import Settings, cache_dir
from wawindow.devservices.process import free_port
from wawindow.devservices.stack import LocalServices
from wawindow.kafka.topics import create_topics
from wawindow.keys import Topics

if TYPE_CHECKING:
    from tests.engine_harness import Scenario
    from wawindow.engine.store import WindowStore
    from wawindow.kafka.publisher import Publisher
    from wawindow.redis.connection import AnyRedis

# Property tests: a fixed, derandomized set of examples in CI; more, and random, elsewhere.
_SLOW = [hypothesis.HealthCheck.too_slow]
hypothesis.settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=_SLOW
)
hypothesis.settings.register_profile("dev", deadline=None, suppress_health_check=_SLOW)
hypothesis.settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def examples(ci: int) -> int:
    """How many examples a property test runs: ``ci`` in CI, five times as many elsewhere."""
    return ci if hypothesis.settings.get_current_profile_name() == "ci" else 5 * ci


# Meta's published sample bodies and the project's group bodies (see SOURCES.md there).
PAYLOADS = Path(__file__).parent / "fixtures" / "meta"

APP_SECRET = "test-app-secret"
SUPPRESSION_KEY = "test-suppression-key"
OLD_APP_SECRET = "test-app-secret-before-rotation"
VERIFY_TOKEN = "test-verify-token"

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str
    local: LocalServices | None


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """The session's Kafka broker and redis-server (started here unless given)."""
    kafka = os.environ.get("WAWINDOW_TEST_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("WAWINDOW_TEST_REDIS_URL")
    if kafka and redis_url:
        yield Services(kafka, redis_url, None)
        return
    with LocalServices.create(cache_dir()) as local:
        yield Services(local.kafka_bootstrap, local.redis_url, local)


@pytest.fixture
def topic_prefix() -> str:
    return new_prefix()


def new_prefix() -> str:
    return f"test.{uuid.uuid4().hex[:12]}."


@pytest.fixture
def settings(services: Services, topic_prefix: str) -> Settings:
    return settings_for(services, topic_prefix)


def settings_for(services: Services, topic_prefix: str) -> Settings:
    return Settings.from_env(
        {
            "WAWINDOW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
            "WAWINDOW_REDIS_URL": services.redis_url,
            "WAWINDOW_APP_SECRETS": f"{APP_SECRET},{OLD_APP_SECRET}",
            "WAWINDOW_VERIFY_TOKEN": VERIFY_TOKEN,
            "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
            "WAWINDOW_TOPIC_PREFIX": topic_prefix,
            "WAWINDOW_KAFKA_ACK_TIMEOUT_MS": "3000",
        }
    )


@pytest.fixture
async def topics(settings: Settings) -> Topics:
    """This test's own topics, created on the real broker."""
    assert settings.kafka_bootstrap
    names = Topics(settings.topic_prefix)
    await create_topics(settings.kafka_bootstrap, names, partitions=3, replication_factor=1)
    return names


@pytest.fixture
async def receiver(settings: Settings, topics: Topics) -> AsyncIterator[Client]:
    """The webhook receiver on a real port, producing to this test's topics."""
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real 3-node Redis Cluster for the session; yields a node's URL."""
    from wawindow.devservices.redis_server import RedisClusterNodes

    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def redis_db1(services: Services) -> str:
    """The session's redis-server, database 1: the engine tests' own, flushed per test."""
    return services.redis_url.rsplit("/", 1)[0] + "/1"


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[AnyRedis]:
    """A client of database 1 (:func:`redis_db1`), flushed: for tests of the store alone."""
    from wawindow.redis.connection import connect

    client = await connect(redis_db1(services))
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


async def loaded_store(redis: AnyRedis) -> WindowStore:
    """A store as a worker has it: its scripts loaded, remembering nothing yet."""
    from wawindow.engine.store import EngineConfig, WindowStore

    store = WindowStore(redis, EngineConfig())
    await store.load()
    return store


@asynccontextmanager
async def fresh_scenario(services: Services) -> AsyncIterator[Scenario]:
    """What the ``s`` fixture gives, made anew: for a property test's every example."""
    from tests.engine_harness import scenario

    settings = settings_for(services, new_prefix())
    assert settings.kafka_bootstrap
    names = Topics(settings.topic_prefix)
    await create_topics(settings.kafka_bootstrap, names, partitions=3, replication_factor=1)
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        async with scenario(client, settings, names, redis_db1(services)) as sc:
            yield sc
    finally:
        await client.close()


@pytest.fixture
async def s(
    receiver: Client, settings: Settings, topics: Topics, services: Services
) -> AsyncIterator[Scenario]:
    """A scenario on the session's Kafka and Redis: the receiver, a worker, and the state."""
    from tests.engine_harness import scenario

    async with scenario(receiver, settings, topics, redis_db1(services)) as sc:
        yield sc


@pytest.fixture
async def publisher(s: Scenario) -> AsyncIterator[Publisher]:
    """A started publisher on the scenario's Kafka (for the API's consent writes)."""
    from wawindow.kafka.publisher import Publisher

    assert s.settings.kafka_bootstrap
    p = Publisher(s.settings.kafka_bootstrap, ack_timeout_ms=5000)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
def webhook_process(
    services: Services, topic_prefix: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``wawindow run webhook`` as a real process on a free port; killed if still running."""
    from tests.cliutil import WAWINDOW, base_env, run

    env = base_env(services, topic_prefix)
    assert run(["topics", "create", "--partitions", "3"], env).returncode == 0
    port = free_port()
    env["WAWINDOW_HTTP_PORT"] = str(port)
    proc = subprocess.Popen([*WAWINDOW, "run", "webhook"], env=env, stderr=subprocess.PIPE)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
