"""What a sender and a subscriber read: the window view and `wawindow window` / `events`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from asyncio.subprocess import PIPE

import pytest

from tests.conftest import Services, redis_db1
from tests.engine_harness import HOUR, Scenario
from wawindow.dev import samples
from wawindow.engine.cloudevents import iso
from wawindow.engine.views import window_view

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PN = samples.PHONE_NUMBER_ID
WA = "16505551234"
BSUID = "US.13491208655302741918"


async def test_the_view_shows_windows_conversations_and_opt_outs(s: Scenario) -> None:
    t = s.now - HOUR
    await s.inbound("wamid.in", t)
    await s.status(
        "wamid.out",
        "delivered",
        t + 60,
        pricing=samples.pmp_pricing("service", "free_customer_service"),
    )
    await s.post(samples.preference(WA, "stop", t + 120))
    await s.process()

    view = await window_view(s.store, PN, WA, s.now)

    assert view == {
        "waba_id": samples.WABA_ID,
        "phone_number_id": PN,
        "user": {"user_id": None, "wa_id": WA},
        "service_window": {"open": True, "opened_at": iso(t), "expires_at": iso(t + 24 * HOUR)},
        "entry_point_window": None,
        "conversations": [
            {
                "category": "service",
                "initiator": "user",
                "type": "regular",
                "source": "derived",
                "conversation_id": None,
                "opened_at": iso(t + 60),
                "expires_at": iso(t + 60 + 24 * HOUR),
            }
        ],
        "marketing_opt_out": True,
        "opted_out": False,
    }


async def test_a_closed_window_shows_its_last_times_and_an_unknown_user_is_none(
    s: Scenario,
) -> None:
    t = s.now - 30 * HOUR
    await s.inbound("wamid.in", t)
    await s.process()

    view = await window_view(s.store, PN, WA, s.now)

    assert view is not None
    assert view["service_window"] == {
        "open": False,
        "opened_at": iso(t),
        "expires_at": iso(t + 24 * HOUR),
    }
    assert await window_view(s.store, PN, "19999999999", s.now) is None


async def test_either_id_of_a_linked_user_finds_the_same_view(s: Scenario) -> None:
    message = samples.text_message("wamid.in", s.now - 60, wa_id=WA, user_id=BSUID)
    await s.post(samples.messages_change(messages=[message]))
    await s.process()

    by_wa = await window_view(s.store, PN, WA, s.now)
    by_bsuid = await window_view(s.store, PN, BSUID, s.now)

    assert by_wa is not None
    assert by_wa == by_bsuid
    assert by_wa["user"] == {"user_id": BSUID, "wa_id": WA}


def _env(s: Scenario, services: Services) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WAWINDOW_")},
        "WAWINDOW_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "WAWINDOW_REDIS_URL": redis_db1(services),
        "WAWINDOW_TOPIC_PREFIX": s.topics.prefix,
    }


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wawindow", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_window_and_events_commands(s: Scenario, services: Services) -> None:
    await s.inbound("wamid.in", s.now - 60)
    await s.process()
    env = _env(s, services)

    window = await run_cli("window", PN, WA, env=env)
    events = await run_cli("events", env=env)
    unknown = await run_cli("window", PN, "19999999999", env=env)

    assert window[0] == 0, window[2]
    assert json.loads(window[1])["service_window"]["open"] is True
    assert events[0] == 0, events[2]
    [line] = events[1].strip().splitlines()
    assert json.loads(line)["type"] == "wawindow.service_window.opened"
    assert unknown[0] == 1
    assert "no state" in unknown[2]


async def test_the_counts_command(s: Scenario, services: Services) -> None:
    from datetime import UTC, datetime, timedelta

    await s.inbound("wamid.in", s.now - 60)
    await s.process()
    env = _env(s, services)
    today = datetime.fromtimestamp(s.now - 60, UTC).date()
    span = ("--from", today.isoformat(), "--to", (today + timedelta(days=1)).isoformat())

    table = await run_cli("counts", *span, env=env)
    as_csv = await run_cli("counts", *span, "--format", "csv", env=env)
    bad = await run_cli("counts", *span, "--tz", "Mars/Olympus", env=env)

    assert table[0] == 0, table[2]
    [row] = [line for line in table[1].splitlines() if "inbound_messages" in line]
    assert row.split()[-1] == "1"
    assert (
        f"{today.isoformat()}T00:00:00+00:00,{samples.WABA_ID},{PN},inbound_messages" in as_csv[1]
    )
    assert bad[0] == 2
    assert "--tz" in bad[2]
    assert len(bad[2].strip().splitlines()) == 1
