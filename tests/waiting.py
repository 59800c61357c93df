"""Waiting on a condition with a deadline, never on time alone: the one poll loop of the
tests for what another process changes (a worker applying, a sentinel failing over)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0, every_s: float = 0.1
) -> None:
    """Poll ``check`` every ``every_s`` until it holds; fail naming ``what`` at the deadline."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110 - another process changes what it reads
                await asyncio.sleep(every_s)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout_s:g} s") from None
