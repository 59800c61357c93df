"""The whole tracker on a secured Kafka and Redis, as managed services run them: a SASL_SSL
(SCRAM-SHA-512) listener with a certificate from a CA made for the run, and a TLS redis-server
with an ACL user of least privilege (``wawindow.redis.connection.REDIS_ACL``). A wrong password or
an untrusted certificate fails at start-up with one clear line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event

from tests.cliutil import WAWINDOW, run, wait_healthy
from tests.conftest import APP_SECRET, SUPPRESSION_KEY, VERIFY_TOKEN
from tests.waiting import until
from wawindow.config import cache_dir
from wawindow.dev import samples
from wawindow.devservices.broker import KafkaBroker, SaslSsl, fetch_jars
from wawindow.devservices.process import free_port
from wawindow.devservices.redis_server import RedisServer
from wawindow.devservices.tls import LocalCA
from wawindow.engine.cloudevents import CONTENT_TYPE
from wawindow.ingest.signature import HEADER, sign
from wawindow.kafka.connection import KafkaConnection
from wawindow.keys import Topics
from wawindow.redis.connection import REDIS_ACL

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

USER, PASSWORD = "wawindow", "kafka-pass-for-this-run"
REDIS_USER, REDIS_PASSWORD = "wawindow", "redis-pass-for-this-run"
TOKEN = "secured-api-token"
PREFIX = "secured."


@dataclass(frozen=True)
class Secured:
    ca: LocalCA
    broker: KafkaBroker
    redis: RedisServer
    password_file: Path

    @property
    def kafka(self) -> KafkaConnection:
        assert self.broker.sasl_ssl is not None
        return KafkaConnection(
            self.broker.sasl_ssl.bootstrap, "SASL_SSL", "SCRAM-SHA-512", USER, PASSWORD,
            str(self.ca.ca),
        )  # fmt: skip

    def env(self, **overrides: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")}
        return {
            **keep,
            "WAWINDOW_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "WAWINDOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "WAWINDOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "WAWINDOW_KAFKA_SASL_USERNAME": USER,
            "WAWINDOW_KAFKA_SASL_PASSWORD_FILE": str(self.password_file),
            "WAWINDOW_KAFKA_SSL_CA_FILE": str(self.ca.ca),
            "WAWINDOW_KAFKA_COMPRESSION": "zstd",
            "WAWINDOW_REDIS_URL": self.redis.tls_url(REDIS_USER, REDIS_PASSWORD),
            "WAWINDOW_REDIS_SSL_CA_FILE": str(self.ca.ca),
            "WAWINDOW_APP_SECRETS": APP_SECRET,
            "WAWINDOW_VERIFY_TOKEN": VERIFY_TOKEN,
            "WAWINDOW_API_WRITE_TOKENS": TOKEN,
            "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
            "WAWINDOW_TOPIC_PREFIX": PREFIX,
            "WAWINDOW_HTTP_HOST": "127.0.0.1",
            "WAWINDOW_LOG_FORMAT": "json",
            **overrides,
        }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("secured")
    ca = LocalCA.create(root / "tls")
    broker = KafkaBroker(
        fetch_jars(cache_dir()), root / "kafka", heap_mb=384,
        sasl_ssl=SaslSsl(ca, ((USER, PASSWORD),)),
    )  # fmt: skip
    redis = RedisServer(root / "redis", tls=ca, users=((REDIS_USER, REDIS_PASSWORD, REDIS_ACL),))
    password_file = root / "kafka-password"
    password_file.write_text(PASSWORD + "\n")
    broker.start()
    try:
        redis.start()
        try:
            yield Secured(ca, broker, redis, password_file)
        finally:
            redis.stop()
    finally:
        broker.stop()


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


async def test_the_tracker_runs_end_to_end_on_sasl_ssl_kafka_and_tls_redis_with_an_acl_user(
    secured: Secured,
) -> None:
    env = secured.env()
    created = run(["topics", "create", "--partitions", "2"], env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    env["WAWINDOW_HTTP_PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*WAWINDOW, "run", "all"], env=env, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        await wait_healthy(base, proc)
        at = int(time.time()) - 60
        raw = samples.encode(
            samples.body(samples.messages_change(messages=[samples.text_message("wamid.s", at)]))
        )
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http:
            posted = await http.post(
                f"{base}/webhook", data=raw, headers={HEADER: sign(raw, APP_SECRET)}
            )
            path = f"{base}/v1/windows/{samples.PHONE_NUMBER_ID}/16505551234"
            person = f"{base}/v1/consents/{samples.WABA_ID}/16505551234"

            def answers(url: str, status: int) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    return (await http.get(url, headers=auth)).status == status

                return check

            await until(answers(path, 200), "the worker applying the webhook")
            view = await (await http.get(path, headers=auth)).json()
            change = {"waba_id": samples.WABA_ID, "user": "16505551234", "category": "all",
                      "decision": "opt_in", "at": at}  # fmt: skip
            recorded = await http.post(f"{base}/v1/consents", json=change, headers=auth)
            await until(answers(person, 200), "the worker applying the consent")
            erased = await http.delete(
                f"{base}/v1/users/{samples.WABA_ID}/16505551234", headers=auth
            )
            await until(answers(path, 404), "the worker erasing the person")
        events = await read_window_events(secured.kafka, 3)
    finally:
        proc.terminate()
        proc.wait(30)

    assert posted.status == 200
    assert view["service_window"]["open"] is True
    assert (recorded.status, erased.status) == (202, 202)
    parsed = []
    for record in events:  # every record is structured mode, as the SDK's Kafka binding reads it
        headers = dict(record.headers)
        assert headers["content-type"] == CONTENT_TYPE.encode()
        parsed.append(from_kafka_event(KafkaMessage(headers, record.key, record.value)))
    by_type = {e.get_type(): e for e in parsed}
    assert set(by_type) >= {
        "wawindow.service_window.opened",
        "wawindow.consent.changed",
        "wawindow.user.erased",
    }
    data: Any = by_type["wawindow.service_window.opened"].get_data()
    assert data["phone_number_id"] == samples.PHONE_NUMBER_ID


async def read_window_events(kafka: KafkaConnection, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        Topics(PREFIX).window_events, **kafka.options(), auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return records


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"WAWINDOW_KAFKA_SASL_PASSWORD_FILE": "", "WAWINDOW_KAFKA_SASL_PASSWORD": "wrong"},
         "SASL authentication failed"),
        ({"WAWINDOW_KAFKA_SSL_CA_FILE": ""}, "TLS certificate is not trusted"),
        ({"WAWINDOW_REDIS_SSL_CA_FILE": ""}, "cannot reach Redis at 127.0.0.1"),
        ({"WAWINDOW_REDIS_URL": "rediss://wawindow:wrong@127.0.0.1:1/0"}, "cannot reach Redis"),
        ({"WAWINDOW_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "WAWINDOW_KAFKA_SASL_MECHANISM is set"),
    ],
)  # fmt: skip
def test_a_wrong_secret_or_an_untrusted_certificate_stops_start_up_with_one_line(
    secured: Secured, overrides: dict[str, str], said: str
) -> None:
    env = {k: v for k, v in secured.env(**overrides).items() if v != ""}
    env["WAWINDOW_HTTP_PORT"] = str(free_port())
    result = subprocess.run(
        [*WAWINDOW, "run", "all"], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip

    assert result.returncode in (1, 2)
    assert said in last_line(result), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr
    assert REDIS_PASSWORD not in result.stderr


def test_the_documented_acl_is_the_one_the_tests_run_under() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "connecting.md").read_text()
    assert f"ACL SETUSER wawindow on >PASSWORD {REDIS_ACL}'" in doc
