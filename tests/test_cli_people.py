"""The ``wawindow`` command as a person at a terminal meets it when something is wrong: a
malformed file named by a setting, Kafka or Redis out of reach. One line of its own saying what
and where, never the libraries' lines. Real processes, real Kafka and Redis."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.cliutil import WAWINDOW, base_env, run
from tests.conftest import Services
from wawindow.devservices.process import free_port


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("setting", "content", "roles"),
    [
        ("WAWINDOW_RATE_CARD_FILE", '{"cards": 1}', "all"),
        (
            "WAWINDOW_RATE_CARD_FILE",
            '{"cards": [{"since": "2026-01-01", "currency": "USD", "markets": 7}]}',
            "api",
        ),
        ("WAWINDOW_RATE_CARD_FILE", "not json", "all"),
        ("WAWINDOW_PRICING_RULES_FILE", '{"since": "2027-01-01"}', "all"),
        ("WAWINDOW_PRICING_RULES_FILE", '[{"pricing_model": "PMP"}]', "api"),
    ],
)
def test_a_malformed_file_stops_run_with_one_line_naming_its_setting(
    services: Services, tmp_path: Path, setting: str, content: str, roles: str
) -> None:
    path = tmp_path / "file.json"
    path.write_text(content)
    env = {**base_env(services, "unused."), "WAWINDOW_REDIS_URL": services.redis_url}
    env |= {"WAWINDOW_API_TOKENS": "t", setting: str(path)}

    result = run(["run", roles], env)

    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert line.startswith(f"wawindow: error: {setting}: cannot use {path}")
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"WAWINDOW_RATE_CARD_FILE": "/nonexistent/card.json"}, "WAWINDOW_RATE_CARD_FILE"),
        (
            {"WAWINDOW_KAFKA_SECURITY_PROTOCOL": "SSL", "WAWINDOW_KAFKA_SSL_CA_FILE": "{here}"},
            "WAWINDOW_KAFKA_SSL_CA_FILE",
        ),
        (
            {
                "WAWINDOW_REDIS_URL": "rediss://127.0.0.1:1/0",
                "WAWINDOW_REDIS_SSL_CA_FILE": "{here}",
            },
            "WAWINDOW_REDIS_SSL_CA_FILE",
        ),
        ({"WAWINDOW_VERIFY_TOKEN_FILE": "/nonexistent/token"}, "WAWINDOW_VERIFY_TOKEN_FILE"),
    ],
)
def test_every_file_setting_is_read_before_start_up(
    services: Services, settings: dict[str, str], named: str
) -> None:
    """A file that is not there, or not what its setting wants (this test file is no CA
    bundle), is one line naming the setting, before any client is made."""
    env = {**base_env(services, "unused."), "WAWINDOW_REDIS_URL": services.redis_url}
    env["WAWINDOW_API_TOKENS"] = "t"
    if "WAWINDOW_VERIFY_TOKEN_FILE" in settings:
        env.pop("WAWINDOW_VERIFY_TOKEN")
    env |= {k: v.replace("{here}", __file__) for k, v in settings.items()}

    result = run(["run", "all"], env)

    assert result.returncode == 2
    assert named in _one_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["topics", "create"], "Kafka"),
        (["events"], "Kafka"),
        (["window", "106540352242922", "16505550101"], "Redis"),
        (["counts", "--from", "2026-11-01", "--to", "2026-11-02"], "Redis"),
    ],
)
def test_kafka_or_redis_out_of_reach_is_one_line_saying_what_and_where(
    services: Services, args: list[str], what: str
) -> None:
    closed = free_port()  # nothing listens there
    env = base_env(services, "unused.")
    env.pop("WAWINDOW_LOG_FORMAT")  # as a person runs it
    if what == "Kafka":
        env["WAWINDOW_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{closed}"
    else:
        env["WAWINDOW_REDIS_URL"] = f"redis://127.0.0.1:{closed}/0"

    result = run(args, env)

    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith(f"wawindow: cannot reach {what} at 127.0.0.1:{closed}"), line


def test_run_with_kafka_out_of_reach_says_so_without_the_clients_lines(
    services: Services,
) -> None:
    env = {**base_env(services, "unused."), "WAWINDOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}

    result = run(["run", "webhook"], env)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("wawindow: cannot reach Kafka at 127.0.0.1:")
    assert '"event":"wawindow.start"' in lines[0]  # the service's own start-up line
    assert not [line for line in lines if "aiokafka" in line or "Unclosed" in line]


async def test_events_follow_waits_for_kafka_with_a_growing_delay_one_line_an_attempt(
    services: Services,
) -> None:
    closed = free_port()
    env = base_env(services, "unused.")
    env["WAWINDOW_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{closed}"
    proc = await asyncio.create_subprocess_exec(
        *WAWINDOW, "events", "--follow",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):  # the third attempt comes after 1 + 2 s
            while len(lines) < 3:
                raw = await proc.stderr.readline()
                assert raw, "wawindow events --follow ended:\n" + "\n".join(lines)
                lines.append(raw.decode().rstrip())
    finally:
        proc.kill()
        await proc.wait()

    pattern = re.compile(
        rf"wawindow: cannot reach Kafka at 127\.0\.0\.1:{closed}: .+;"
        r" attempt (\d+), trying again in (\d+) s"
    )
    found = [pattern.fullmatch(line) for line in lines]
    assert all(found), lines
    assert [(int(m[1]), int(m[2])) for m in found if m] == [(1, 1), (2, 2), (3, 4)]


def test_the_follow_delay_doubles_up_to_thirty_seconds() -> None:
    from wawindow.cli.state import retry_delay

    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert retry_delay(10_000) == 30


def test_events_for_a_topic_that_is_not_there_says_so_at_once(services: Services) -> None:
    env = base_env(services, "nowhere.")

    result = run(["events"], env)

    assert result.returncode == 1
    line = _one_line(result.stderr)
    assert line.startswith("wawindow: Kafka at ")
    assert "no topic nowhere.window-events" in line
