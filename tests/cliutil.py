"""Running the ``wawindow`` command from tests: real processes against the session's services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import pytest

from tests.conftest import APP_SECRET, VERIFY_TOKEN, Services

WAWINDOW = [sys.executable, "-m", "wawindow"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WAWINDOW, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def base_env(services: Services, prefix: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")}
    return {
        **keep,
        "WAWINDOW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "WAWINDOW_APP_SECRETS": APP_SECRET,
        "WAWINDOW_VERIFY_TOKEN": VERIFY_TOKEN,
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
