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
from asyncio.subprocess import Process
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wawindow.cli import DEV_API_TOKEN
from wawindow.cli.dev import demo_counts
from wawindow.config import cache_dir
from wawindow.contracts import DAY
from wawindow.dev import demo
from wawindow.devservices.broker import fetch_jars, jars_dir
from wawindow.devservices.process import free_port, port_open
from wawindow.devservices.stack import DevData
from wawindow.errors import ServiceStartError

READY = "Ctrl-C stops everything."


@pytest.mark.kafka
@pytest.mark.redis
def dev_env(tmp_path: Path, port: int) -> dict[str, str]:
    """A newcomer's environment (no ``WAWINDOW_*``), with a cache of its own in ``tmp_path``
    (the Kafka jars linked from the real one): the data ``dev`` keeps, and its ``dev.env``,
    stay out of the real cache."""
    real = jars_dir(cache_dir())
    fetch_jars(cache_dir())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / real.parent.name).symlink_to(real.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")}
    return env | {"WAWINDOW_HTTP_PORT": str(port), "WAWINDOW_CACHE_DIR": str(cache)}


async def start_dev(env: dict[str, str], *args: str) -> tuple[Process, list[str]]:
    """``wawindow dev`` started, and its lines until it says it is ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wawindow", "dev", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(180):
            while not lines or lines[-1] != READY:
                raw = await proc.stdout.readline()
                assert raw, "wawindow dev exited before it was ready:\n" + "\n".join(lines)
                lines.append(raw.decode().rstrip())
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, lines


async def stop_dev(proc: Process) -> tuple[str, str]:
    """Ctrl-C, and what it printed after being ready (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(60):
        rest, errors = await proc.communicate()
    return rest.decode(), errors.decode()


def exports(env_file: Path) -> dict[str, str]:
    """The variables a ``dev.env`` exports."""
    return dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in env_file.read_text().splitlines()
    )


@pytest.mark.kafka
@pytest.mark.redis
async def test_dev_runs_the_demo_answers_the_api_and_stops_cleanly_on_sigint(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = dev_env(tmp_path, port)
    proc, lines = await start_dev(env)
    try:
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
        exported = await asyncio.to_thread(exports, env_file)
        events = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "wawindow", "events", "--from-beginning"],
            env={**env, **exported}, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    except BaseException:
        proc.kill()
        await proc.wait()
        raise

    rest, errors = await stop_dev(proc)

    assert lines[0] == f"fresh data in {Path(env['WAWINDOW_CACHE_DIR']) / 'dev'}"
    assert f"port      {port} on 127.0.0.1" in output  # this machine only, by default
    assert "consent   policy off" in output
    assert "rate card none" in output  # no rate card is built in
    assert exported["WAWINDOW_HTTP_PORT"] == str(port)
    assert len(exported["WAWINDOW_SUPPRESSION_KEY"]) == 64
    assert not [line for line in errors.splitlines() if line.startswith("{")]  # no JSON lines
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
    assert proc.returncode == 0, errors[-2000:]
    assert "GroupCoordinatorNotAvailable" not in output + errors  # no alarming noise
    assert "stopped; nothing left running." in rest
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


async def _window(port: int, user: demo.DemoUser) -> tuple[int, dict[str, Any] | None]:
    url = f"http://127.0.0.1:{port}/v1/windows/{user.phone_number_id}/{user.wa_id}"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {DEV_API_TOKEN}"}) as session,
        session.get(url) as r,
    ):
        return r.status, (await r.json() if r.status == 200 else None)


@pytest.mark.kafka
@pytest.mark.redis
async def test_dev_keeps_its_data_across_a_restart_and_fresh_starts_over(tmp_path: Path) -> None:
    """A window the first run recorded is there after a restart (Kafka's and Redis's data, and
    the suppression key, kept in the cache's dev folder); ``--fresh`` starts over."""
    port = free_port()
    env = dev_env(tmp_path, port)
    cache = Path(env["WAWINDOW_CACHE_DIR"])
    data = cache / "dev"
    user = demo.USERS[2]  # wrote 5 h ago: a service window open and a utility conversation
    runs: list[tuple[list[str], int, dict[str, Any] | None, str]] = []
    for args in ((), (), ("--fresh", "--no-demo")):
        proc, lines = await start_dev(env, *args)
        try:
            status, window = await _window(port, user)
            key = (await asyncio.to_thread(exports, cache / "dev.env"))["WAWINDOW_SUPPRESSION_KEY"]
        finally:
            rest, _ = await stop_dev(proc)
        assert "stopped; nothing left running." in rest
        runs.append((lines, status, window, key))
    (first, status1, window1, key1), (second, status2, window2, key2) = runs[:2]
    third, status3, _, key3 = runs[2]

    assert first[0] == f"fresh data in {data}"
    assert "replaying the demo set" in "\n".join(first)
    assert second[0] == f"kept data from {data}  (wawindow dev --fresh starts over)"
    assert "the demo set is in the kept data already" in "\n".join(second)
    assert status1 == status2 == 200
    assert window1 is not None
    assert window2 is not None
    assert window2["service_window"] == window1["service_window"]
    assert window2["conversations"] == window1["conversations"]
    assert key1 == key2  # the same secret for the same data
    assert third[0] == f"fresh data in {data}"
    assert status3 == 404  # nothing kept, and no demo this time
    assert key3 != key1
    assert (data / "suppression.key").stat().st_mode & 0o777 == 0o600


def test_dev_with_a_malformed_rate_card_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    env = dev_env(tmp_path, free_port())
    card = tmp_path / "card.json"
    card.write_text('{"cards": [{"since": "2026-01-01", "currency": "USD", "markets": 7}]}')
    env["WAWINDOW_RATE_CARD_FILE"] = str(card)

    result = subprocess.run(
        [sys.executable, "-m", "wawindow", "dev"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"wawindow: error: WAWINDOW_RATE_CARD_FILE: cannot use {card}")
    assert result.stdout == ""
    assert not (Path(env["WAWINDOW_CACHE_DIR"]) / "dev").exists()  # nothing started or kept


def test_one_dev_at_a_time_and_a_killed_ones_lock_is_no_obstacle(tmp_path: Path) -> None:
    path = tmp_path / "dev"
    path.mkdir()
    (path / DevData.LOCK).write_text("999999999\n")  # a killed dev leaves the file, not the lock

    holder = rf"another wawindow dev \(pid {os.getpid()}\) is using {path}"
    with DevData(path), pytest.raises(ServiceStartError, match=holder):
        DevData(path).__enter__()
    with DevData(path):  # let go of when its holder is done
        pass


def test_services_a_killed_dev_left_running_are_stopped_first(tmp_path: Path) -> None:
    path = tmp_path / "dev"
    path.mkdir()
    marker = str(path / "kafka" / "server.properties")
    # stand-ins for services a killed dev left running: processes that live until they are
    # stopped (the test waits on their exit, never on time passing)
    sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
    left = subprocess.Popen([*sleep, marker])
    stranger = subprocess.Popen([*sleep, "something else"])  # a pid used again since
    recorded = [{"pid": left.pid, "expect": marker}, {"pid": stranger.pid, "expect": marker}]
    (path / DevData.PROCESSES).write_text(json.dumps(recorded))
    try:
        with DevData(path):
            assert left.wait(10) == -signal.SIGTERM
            assert stranger.poll() is None
    finally:
        left.kill()
        stranger.kill()
        left.wait()
        stranger.wait()


def test_fresh_wipes_the_kept_data_and_the_key_but_not_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "dev"
    with DevData(path) as data:
        assert data.is_empty()
        key = data.suppression_key()
        assert data.suppression_key() == key
        assert (path / DevData.SUPPRESSION_KEY).stat().st_mode & 0o777 == 0o600
        (path / "kafka" / "data").mkdir(parents=True)
        assert not data.is_empty()

        data.wipe()

        assert data.is_empty()
        assert (path / DevData.LOCK).exists()
        assert data.suppression_key() != key
