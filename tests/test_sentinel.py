"""Redis Sentinel: the tracker finds its master through real redis-sentinel processes and
goes on through a failover (the master killed mid-run), losing nothing it had acknowledged."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.cliutil import run_all, wait_healthy
from tests.conftest import APP_SECRET, Services
from tests.waiting import until
from wawindow.dev import samples
from wawindow.devservices.redis_server import RedisSentinelGroup
from wawindow.ingest.signature import HEADER, sign

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
TOKEN = "sentinel-token"


async def post_inbound(http: aiohttp.ClientSession, base: str, wa_id: str) -> int:
    message = samples.text_message(f"wamid.{wa_id}", int(time.time()) - 60, wa_id=wa_id)
    raw = samples.encode(samples.body(samples.messages_change(messages=[message])))
    response = await http.post(f"{base}/webhook", data=raw, headers={HEADER: sign(raw, APP_SECRET)})
    return response.status


async def window_of(http: aiohttp.ClientSession, base: str, wa_id: str) -> int:
    path = f"{base}/v1/windows/{samples.PHONE_NUMBER_ID}/{wa_id}"
    response = await http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    return response.status


async def test_the_tracker_goes_on_through_a_sentinel_failover(
    services: Services, tmp_path: Path
) -> None:
    group = RedisSentinelGroup(tmp_path / "sentinel")
    group.start()
    try:
        settings = {
            "WAWINDOW_REDIS_URL": "redis://sentinel-chooses/0",
            "WAWINDOW_REDIS_SENTINELS": group.addresses,
            "WAWINDOW_REDIS_SENTINEL_MASTER": group.master_name,
            "WAWINDOW_API_TOKENS": TOKEN,
        }
        with run_all(services, "sentinel.", 0, **settings) as (base, proc):
            await wait_healthy(base, proc)
            async with aiohttp.ClientSession() as http:
                before = await post_inbound(http, base, "16505550001")

                async def first_applied() -> bool:
                    return await window_of(http, base, "16505550001") == 200

                await until(first_applied, "the first webhook applied")
                assert group.master.pid is not None
                os.kill(group.master.pid, signal.SIGKILL)

                async def failed_over() -> bool:
                    return group.current_master_port() == group.replica.port

                await until(failed_over, "the sentinels promoting the replica")
                after = await post_inbound(http, base, "16505550002")

                async def second_applied() -> bool:
                    return await window_of(http, base, "16505550002") == 200

                await until(second_applied, "a webhook applied on the new master")
                first = await window_of(http, base, "16505550001")
            assert proc.poll() is None
    finally:
        group.stop()

    assert (before, after) == (200, 200)
    assert first == 200  # acknowledged before the failover: on the replica, not lost
