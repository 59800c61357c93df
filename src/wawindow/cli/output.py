"""What every command shares: settings read once from the environment, role lists, and
output to stdout."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Mapping, Sequence

from wawindow import logs
from wawindow.config import Settings
from wawindow.roles import ROLES


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


def settings_from(env: Mapping[str, str]) -> Settings:
    settings = Settings.from_env(env)
    logs.configure(settings.log_level, settings.log_format)
    return settings


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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
