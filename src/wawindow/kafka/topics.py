"""``wawindow topics create``: the topics, with partitions, replication and retention."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from wawindow.errors import KafkaUnavailable
from wawindow.kafka.connection import KafkaConnection, describe, diagnose
from wawindow.keys import Topics

_DAY_MS = 24 * 3600 * 1000
# webhook-events is the only replay source Meta leaves us (it has no history API), so it is
# kept well past Meta's 7 days of retries; the dead-letter topic longer still, for a human.
RETENTION_MS = {
    "webhook-events": 30 * _DAY_MS,
    "window-events": 7 * _DAY_MS,
    "dead-letter": 90 * _DAY_MS,
    # consent is kept for years and rebuilt from here: nothing expires by age; compaction
    # (below) keeps every change (each has its own key) and forgets the ones an erasure
    # tombstoned
    "consent-events": -1,
}
_TOPIC_ALREADY_EXISTS = 36
# The largest record a topic takes. Kafka's default is 1 MB, and a signed body Meta may send
# (up to 3 MB) must fit whole on dead-letter, so that topic takes up to this much; the
# receiver keeps a digest and an excerpt of anything larger (see webhook.app).
MAX_RECORD_BYTES = 8 * 1024 * 1024
TOPIC_CONFIGS = {
    "dead-letter": {"max.message.bytes": str(MAX_RECORD_BYTES)},
    "consent-events": {"cleanup.policy": "compact"},
}


@dataclass(frozen=True, slots=True)
class TopicResult:
    name: str
    created: bool
    partitions: int
    replication_factor: int


async def create_topics(
    kafka: str | KafkaConnection,
    topics: Topics,
    *,
    partitions: int,
    replication_factor: int | None = None,
    timeout_s: float = 30.0,
) -> list[TopicResult]:
    """Create the topics that do not exist yet and wait until each has a leader.

    ``replication_factor`` None means min(3, brokers in the cluster).
    """
    conn = KafkaConnection.of(kafka)
    bootstrap = conn.bootstrap
    admin = AIOKafkaAdminClient(**conn.options(), request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        brokers = len(cluster["brokers"])
        rf = replication_factor or min(3, brokers)
        if rf > brokers:
            raise KafkaUnavailable(
                f"replication factor {rf} needs {rf} brokers; the cluster has {brokers}"
            )

        def configs(name: str) -> dict[str, str]:
            base = name.removeprefix(topics.prefix)
            return {
                "retention.ms": str(RETENTION_MS[base]),
                "min.insync.replicas": str(min(2, rf)),
                **TOPIC_CONFIGS.get(base, {}),
            }

        new = [NewTopic(name, partitions, rf, topic_configs=configs(name)) for name in topics.all()]
        response = await admin.create_topics(new)
        created = {name for name, code, *_ in response.topic_errors if code == 0}
        failed = [
            (name, code)
            for name, code, *_ in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise KafkaUnavailable(f"could not create topics: {failed}")
        # a topic made by an earlier release gets what it needs now (the whole set: Kafka's
        # AlterConfigs resets what it is not given)
        existing = [
            ConfigResource(ConfigResourceType.TOPIC, name, configs(name))
            for name in topics.all()
            if name not in created and name.removeprefix(topics.prefix) in TOPIC_CONFIGS
        ]
        if existing:
            await admin.alter_configs(existing)
        return await _wait_for_leaders(admin, topics, created, timeout_s)
    except KafkaConnectionError as exc:
        why = await diagnose(conn)
        raise KafkaUnavailable(f"cannot reach Kafka at {bootstrap}: {why}") from exc
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot create topics on {bootstrap}: {describe(exc)}") from exc
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: Topics, created: set[str], timeout_s: float
) -> list[TopicResult]:
    async with asyncio.timeout(timeout_s):
        while True:
            described = await admin.describe_topics(list(topics.all()))
            ready = [
                t
                for t in described
                if t["error_code"] == 0
                and t["partitions"]
                and all(p["leader"] >= 0 for p in t["partitions"])
            ]
            if len(ready) == len(topics.all()):
                return [
                    TopicResult(
                        t["topic"],
                        t["topic"] in created,
                        len(t["partitions"]),
                        len(t["partitions"][0]["replicas"]),
                    )
                    for t in ready
                ]
            await asyncio.sleep(0.1)


async def wait_for_group_coordinator(
    kafka: str | KafkaConnection, group_id: str, timeout_s: float = 60.0
) -> None:
    """Wait until the broker names a coordinator for ``group_id``. On a fresh broker the
    offsets topic does not exist yet; a consumer joining then logs an error until it does."""
    conn = KafkaConnection.of(kafka)
    bootstrap = conn.bootstrap
    admin = AIOKafkaAdminClient(**conn.options(), request_timeout_ms=5000)
    try:
        await admin.start()
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    await admin.find_coordinator(group_id)
                    return
                except KafkaError:
                    await asyncio.sleep(0.2)  # the broker is creating its offsets topic
    except KafkaError as exc:
        raise KafkaUnavailable(f"no group coordinator on {bootstrap}: {describe(exc)}") from exc
    finally:
        await admin.close()
