"""Running the ``wawindow`` command from tests: real processes against the session's services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest

from tests.conftest import APP_SECRET, SUPPRESSION_KEY, VERIFY_TOKEN, Services
from wawindow.devservices.process import free_port

WAWINDOW = [sys.executable, "-m", "wawindow"]


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run a command to its end; ``stdin`` is what it reads (a pipe, never a terminal)."""
    return subprocess.run(
        [*WAWINDOW, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def base_env(services: Services, prefix: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")}
    return {
        **keep,
        "WAWINDOW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "WAWINDOW_APP_SECRETS": APP_SECRET,
        "WAWINDOW_VERIFY_TOKEN": VERIFY_TOKEN,
        "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
        "WAWINDOW_TOPIC_PREFIX": prefix,
        "WAWINDOW_HTTP_HOST": "127.0.0.1",
        "WAWINDOW_LOG_FORMAT": "json",
    }


async def wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            assert proc.poll() is None, "wawindow exited during start-up"
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail("wawindow never became ready")


@contextmanager
def run_all(
    services: Services, prefix: str, redis_db: int, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``wawindow run all`` on a free port, its topics created, on the session's Kafka and
    Redis database ``redis_db``; yields its base URL and the process (terminated after)."""
    env = base_env(services, prefix)
    assert run(["topics", "create", "--partitions", "2"], env).returncode == 0
    port = free_port()
    env |= {
        "WAWINDOW_HTTP_PORT": str(port),
        "WAWINDOW_REDIS_URL": services.redis_url.rsplit("/", 1)[0] + f"/{redis_db}",
        "WAWINDOW_WORKER_GROUP": f"{prefix}worker",
        **settings,
    }
    proc = subprocess.Popen([*WAWINDOW, "run", "all"], env=env, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(30)
