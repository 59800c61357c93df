"""``wawindow replay``: sign webhook bodies and POST them to a receiver, as Meta would.

A ``.jsonl`` file holds one body per line; any other file holds one JSON body, or a JSON array
of bodies. Bodies are sent in order, one at a time or at ``rate`` per second. A ``503`` or a
refused connection is retried with backoff, the way Meta retries; any other answer is final.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiohttp
import orjson

from wawindow.errors import ConfigError
from wawindow.ingest.signature import HEADER, sign

RETRIES = 5


@dataclass
class ReplayResult:
    statuses: Counter[int] = field(default_factory=Counter)
    failed: int = 0  # bodies that never got an answer

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0 and set(self.statuses) <= {200}


def load_bodies(paths: Iterable[str | Path]) -> list[bytes]:
    """The bodies in ``paths``, each as the exact bytes to sign and send."""
    bodies: list[bytes] = []
    for raw_path in paths:
        path = Path(raw_path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"FILE: cannot read {path}: {exc.strerror}") from None
        if path.suffix == ".jsonl":
            for number, line in enumerate(data.splitlines(), 1):
                if line.strip():
                    _check_json(line, f"{path}:{number}")
                    bodies.append(line.strip())
            continue
        value = _check_json(data, str(path))
        if isinstance(value, list):
            bodies.extend(orjson.dumps(item) for item in value)
        else:
            bodies.append(data.strip())
    return bodies


def _check_json(data: bytes, where: str) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ConfigError(f"FILE: {where} is not JSON") from None


async def replay(
    bodies: Sequence[bytes],
    url: str,
    secret: str,
    *,
    rate: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """POST each body, signed with ``secret``; at most ``rate`` bodies per second."""
    result = ReplayResult()
    interval = 1.0 / rate if rate else 0.0
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for i, raw in enumerate(bodies):
            if interval:
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing, not waiting for a condition
            status = await _post(session, url, raw, secret)
            if status is None:
                result.failed += 1
            else:
                result.statuses[status] += 1
            if progress is not None:
                progress(i + 1, len(bodies))
    return result


async def _post(session: aiohttp.ClientSession, url: str, raw: bytes, secret: str) -> int | None:
    headers = {HEADER: sign(raw, secret), "Content-Type": "application/json"}
    for attempt in range(RETRIES + 1):
        try:
            async with session.post(url, data=raw, headers=headers) as response:
                await response.read()
                if response.status != 503 or attempt == RETRIES:
                    return response.status
        except (aiohttp.ClientConnectionError, TimeoutError):
            if attempt == RETRIES:
                return None
        await asyncio.sleep(0.2 * 2**attempt)  # backoff before Meta-style retry
    return None


class ProgressBar:
    """A one-line bar on a terminal; on anything else, a line per tenth of the way."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._last_tenth = 0
        self._last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        rate = done / max(now - self._started, 1e-6)
        filled = self._width * done // max(total, 1)
        line = f"[{'#' * filled}{'.' * (self._width - filled)}] {done}/{total}  {rate:,.0f}/s"
        if self._tty:
            if done == total or now - self._last_draw >= 0.1:
                self._last_draw = now
                end = "\n" if done == total else ""
                self._stream.write(f"\r{line}{end}")
                self._stream.flush()
            return
        tenth = 10 * done // max(total, 1)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self._stream.write(line + "\n")
            self._stream.flush()
