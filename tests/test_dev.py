"""``wawindow dev`` end to end, as a newcomer runs it: nothing configured, its own Kafka and
Redis, the demo set replayed, the API answering, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from wawindow import demo
from wawindow.cli import DEV_API_TOKEN
from wawindow.cli.dev import demo_counts
from wawindow.contracts import DAY
from wawindow.devservices.process import free_port, port_open

READY = "Ctrl-C stops everything."


@pytest.mark.kafka
@pytest.mark.redis
async def test_dev_runs_the_demo_answers_the_api_and_stops_cleanly_on_sigint() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")}
    env["WAWINDOW_HTTP_PORT"] = str(port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wawindow", "dev",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(180):
            while not lines or lines[-1] != READY:
                raw = await proc.stdout.readline()
                assert raw, "wawindow dev exited before it was ready:\n" + "\n".join(lines)
                lines.append(raw.decode().rstrip())
        output = "\n".join(lines)
        kafka_port = int(re.search(r"Kafka\s+127\.0\.0\.1:(\d+)", output)[1])  # type: ignore[index]
        redis_port = int(re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)", output)[1])  # type: ignore[index]

        user = demo.USERS[1]  # wrote 30 h ago: the window closed before the demo began
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {DEV_API_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{base}/v1/windows/{user.phone_number_id}/{user.wa_id}") as r:
                assert r.status == 200
                window = await r.json()
            async with session.get(
                f"{base}/v1/send-check",
                params={"phone_number_id": user.phone_number_id, "user": user.wa_id,
                        "kind": "free_form"},
            ) as r:  # fmt: skip
                check = await r.json()
        env_file = Path(re.search(r"^  \. (\S+dev\.env)$", output, re.M)[1])  # type: ignore[index]
        text = await asyncio.to_thread(env_file.read_text)
        exports = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in text.splitlines()
        )
        events = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "wawindow", "events", "--from-beginning"],
            env={**env, **exports}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except BaseException:
        proc.kill()
        await proc.wait()
        raise

    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(60):
        rest, errors = await proc.communicate()

    assert f"replaying the demo set: {len(demo.encoded(0))} signed webhooks" in output
    inbound = [line for line in lines if " inbound_messages " in line]
    assert sum(int(line.split()[-1]) for line in inbound) == demo.EXPECTED["inbound_messages"]
    delivered = [line for line in lines if " messages_delivered " in line]
    assert sum(int(line.split()[-1]) for line in delivered) == demo.EXPECTED["messages_delivered"]
    assert "FEP open until" in output
    assert "opted out" in output
    assert window["service_window"]["open"] is False
    assert [c["category"] for c in window["conversations"]] == ["marketing"]
    assert check["allowed"] is False
    assert check["reason"] == "window_closed_template_required"
    assert proc.returncode == 0, errors.decode()[-2000:]
    assert "GroupCoordinatorNotAvailable" not in output + errors.decode()  # no alarming noise
    assert "stopped; nothing left running." in rest.decode()
    types = [json.loads(line)["type"] for line in events.stdout.splitlines()]
    assert "wawindow.service_window.closed" in types  # the demo's long-expired window
    assert "wawindow.entry_point_window.opened" in types
    assert not await asyncio.to_thread(env_file.exists)
    assert not port_open(port)
    assert not port_open(kafka_port)
    assert not port_open(redis_port)


def _timestamps(value: object) -> list[int]:
    """Every ``timestamp`` anywhere in a webhook body."""
    if isinstance(value, dict):
        found = [int(value["timestamp"])] if "timestamp" in value else []
        return found + [t for v in value.values() for t in _timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in _timestamps(v)]
    return []


@pytest.mark.parametrize("hour", range(0, 24, 3))
def test_the_demos_counts_cover_every_webhook_at_any_time_of_day(hour: int) -> None:
    now = 1_790_035_200 // DAY * DAY + hour * 3600 + 1234
    query = demo_counts(now)
    stamps = [t for body in demo.bodies(now) for t in _timestamps(body)]
    assert min(stamps) == now - demo.OLDEST_S
    assert all(query.start <= t < query.end for t in stamps)
