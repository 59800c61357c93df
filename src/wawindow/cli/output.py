"""What every command shares: settings read once from the environment, role lists, a
Redis connection for one call, and output to stdout."""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wawindow import logs
from wawindow.config import Settings
from wawindow.errors import ConfigError
from wawindow.redis.connection import AnyRedis, connect
from wawindow.service.app import ROLES


def parse_roles(value: str) -> tuple[str, ...]:
    if value == "all":
        return ROLES
    roles = tuple(dict.fromkeys(r.strip() for r in value.split(",")))
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(
            f"{value!r}: roles are {', '.join(ROLES)}, all, or a comma-separated list"
        )
    return roles


def settings_from(
    env: Mapping[str, str], *, for_people: bool = True, library_log: Path | None = None
) -> Settings:
    """The settings, and logging configured: for a person at a terminal (lines to read, the
    libraries' lines kept out: see :func:`wawindow.logs.configure`), or, with ``for_people``
    false, for a service (``wawindow run``: JSON lines unless on a TTY)."""
    settings = Settings.from_env(env)
    logs.configure(
        settings.log_level, settings.log_format, for_people=for_people, library_log=library_log
    )
    return settings


T = TypeVar("T")


def with_redis(settings: Settings, call: Callable[[AnyRedis], Awaitable[T]]) -> T:
    """Run ``call`` with a Redis client for the configured URL, closed afterwards."""
    settings.require("redis_url")
    assert settings.redis_url is not None
    url = settings.redis_url.value

    async def run() -> T:
        redis = await connect(url, settings.redis_tls, settings.redis_sentinels)
        try:
            return await call(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz: {name!r} is not an IANA time zone name") from None


def write_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.DictWriter(
        sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.flush()


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def err(line: str) -> None:
    """One line for the person at the terminal, on stderr (after any log lines waiting)."""
    logs.drain()
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def columns(lines: Sequence[Sequence[str]], numeric: Collection[int]) -> str:
    """Aligned columns; numeric ones to the right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
