"""The ``wawindow`` command as a user runs it: real processes, real Kafka."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.cliutil import WAWINDOW, base_env, run, wait_healthy
from tests.conftest import APP_SECRET, PAYLOADS, Services
from tests.kafkautil import read_all
from wawindow.ingest.signature import HEADER, sign
from wawindow.keys import Topics


@pytest.mark.parametrize(
    ("drop", "override", "named"),
    [
        ("WAWINDOW_APP_SECRETS", {}, "WAWINDOW_APP_SECRETS"),
        ("WAWINDOW_VERIFY_TOKEN", {}, "WAWINDOW_VERIFY_TOKEN"),
        (None, {"WAWINDOW_HTTP_PORT": "http"}, "WAWINDOW_HTTP_PORT"),
    ],
)
def test_run_refuses_to_start_with_one_line_naming_the_variable(
    services: Services, drop: str | None, override: dict[str, str], named: str
) -> None:
    env = {**base_env(services, "unused."), **override}
    if drop:
        env.pop(drop)

    result = run(["run", "webhook"], env)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert named in lines[0]


def test_topics_create_from_the_command_line(services: Services, topic_prefix: str) -> None:
    env = base_env(services, topic_prefix)

    first = run(["topics", "create", "--partitions", "2"], env)
    again = run(["topics", "create", "--partitions", "2"], env)

    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created, 2 partitions") == len(Topics().all())
    assert again.stdout.count("exists") == len(Topics().all())


@pytest.mark.kafka
async def test_run_webhook_puts_the_sample_bodies_on_webhook_events(
    services: Services, topic_prefix: str, webhook_process: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """The acceptance path: the real command, the sample bodies of the fixtures (Meta's and
    the group bodies), the real topic."""
    base, proc = webhook_process
    await wait_healthy(base, proc)
    files = sorted(PAYLOADS.glob("*.json"))

    async with aiohttp.ClientSession() as session:
        for path in files:
            raw = path.read_bytes()
            async with session.post(
                f"{base}/webhook", data=raw, headers={HEADER: sign(raw, APP_SECRET)}
            ) as r:
                assert r.status == 200, path.name

    records = await read_all(services.kafka_bootstrap, Topics(topic_prefix).webhook_events)
    kinds = sorted(orjson.loads(r.value)["kind"] for r in records)
    assert len(records) == len(files) + 1  # one body carries a message and a value-level error
    assert kinds.count("message") == 15
    assert kinds.count("status") == 11
    assert kinds.count("error") == 2

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    log = proc.stderr.read().decode()
    assert '"event":"webhook.post"' in log
    assert log.rstrip().endswith("}")  # whole lines only
    assert '"event":"wawindow.stopping"' in log  # the lines of its last moments too
    assert "Sheena Nelson" not in log


def test_python_dash_m_and_console_script_agree() -> None:
    """``wawindow --help`` works as installed (the console script sits beside python)."""
    script = Path(sys.executable).with_name("wawindow")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0
    for command in ("dev", "run", "topics", "services"):
        assert command in result.stdout


def test_a_busy_port_stops_start_up_with_one_line_naming_the_setting(services: Services) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {
            **base_env(services, "busy."),
            "WAWINDOW_HTTP_PORT": str(busy.getsockname()[1]),
        }
        result = run(["run", "webhook"], env)

    assert result.returncode == 1
    [line] = [x for x in result.stderr.strip().splitlines() if x.startswith("wawindow:")]
    assert "WAWINDOW_HTTP_PORT" in line
    assert "Traceback" not in result.stderr


async def test_the_api_alone_serves_and_is_ready_with_kafka_down(services: Services) -> None:
    """Reads need only Redis: the API starts and answers with no broker at all, says
    ``"kafka": false`` in ``/readyz`` for information, and answers consent writes 503."""
    from wawindow.devservices.process import free_port

    env = base_env(services, "nokafka.")
    port = free_port()
    env |= {
        "WAWINDOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens there
        "WAWINDOW_REDIS_URL": services.redis_url,
        "WAWINDOW_API_WRITE_TOKENS": "writer",
        "WAWINDOW_HTTP_PORT": str(port),
    }
    proc = subprocess.Popen([*WAWINDOW, "run", "api"], env=env, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        auth = {"Authorization": "Bearer writer"}
        async with aiohttp.ClientSession() as http:
            ready = await http.get(f"{base}/readyz")
            readiness = await ready.json()
            window = await http.get(f"{base}/v1/windows/1065/16505551234", headers=auth)
            change = {
                "waba_id": "1",
                "user": "16505551234",
                "category": "all",
                "decision": "opt_in",
            }
            write = await http.post(f"{base}/v1/consents", json=change, headers=auth)
            answer = await write.json()
    finally:
        proc.terminate()
        proc.wait(30)

    assert (ready.status, readiness["kafka"], readiness["redis"]) == (200, False, True)
    assert window.status == 404
    assert (write.status, answer["error"]) == (503, "kafka_unavailable")
