"""Logging: structlog configured once by the entry point, and masking helpers.

Library modules only call ``structlog.get_logger()``. Log lines never carry message text;
phone numbers and user ids pass through :func:`mask_id` before they reach a line, and the
:func:`redact` processor masks them anyway under the field names that usually hold them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import IO, Any, TextIO

import orjson
import structlog

# Field names whose values are phone numbers or user ids: always masked.
_ID_FIELDS = frozenset(
    {"wa_id", "user_id", "from", "from_user_id", "recipient_id", "recipient_user_id", "user"}
)
# Field names that could hold message content: never logged.
_CONTENT_FIELDS = frozenset({"text", "body", "caption", "content", "message_text"})


def mask_id(value: str) -> str:
    """Mask a phone number or BSUID, keeping enough to tell two apart in a log.

    ``16505551234`` becomes ``16*******34``; ``US.13491208655302741918`` keeps its country
    prefix: ``US.13****************18``.
    """
    prefix, dot, rest = value.rpartition(".")
    if dot and prefix.isalpha():
        return f"{prefix}.{mask_id(rest)}"
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def mask_key(key: str) -> str:
    """Mask the user part of a conversation key ``phone_number_id:user``."""
    number, sep, user = key.partition(":")
    return f"{number}:{mask_id(user)}" if sep else key


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask id fields and drop content fields, whatever the caller did."""
    for name in _CONTENT_FIELDS & event_dict.keys():
        event_dict[name] = "<dropped>"
    for name in _ID_FIELDS & event_dict.keys():
        value = event_dict[name]
        if isinstance(value, str) and "*" not in value:
            event_dict[name] = mask_id(value)
    return event_dict


# JSON lines are written out at most this long after they were logged, or sooner once this many
# bytes wait: one write per request cost the receiver a fifth of its rate (docs/performance.md)
FLUSH_INTERVAL_S = 0.2
FLUSH_BYTES = 64 * 1024


class LineBuffer:
    """A byte stream whose writes are gathered and written out together: when
    :data:`FLUSH_BYTES` wait, at the first write :data:`FLUSH_INTERVAL_S` after the last
    write-out, from a daemon thread in quiet times, and at exit. Lines are whole and in order;
    what a killed process loses is at most the last :data:`FLUSH_INTERVAL_S` of them."""

    def __init__(self, raw: IO[bytes], interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._raw = raw
        self._interval_s = interval_s
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._due = time.monotonic() + interval_s
        self._closed = threading.Event()
        threading.Thread(target=self._tick, name="wawindow-log-flush", daemon=True).start()
        atexit.register(self.close)

    def write(self, data: bytes | str) -> int:
        chunk = data.encode() if isinstance(data, str) else data
        with self._lock:
            self._pending += chunk
            if (
                len(self._pending) >= FLUSH_BYTES
                or time.monotonic() >= self._due
                or self._closed.is_set()  # at exit: straight through
            ):
                self._write_out()
        return len(chunk)

    def flush(self) -> None:
        """Each line's own flush: nothing here (the buffer decides when to write)."""

    def drain(self) -> None:
        """Write out what waits, now."""
        with self._lock:
            self._write_out()

    def close(self) -> None:
        """Write out what waits; later writes go straight through."""
        self._closed.set()
        self.drain()
        if _BUFFERS.get(id(self._raw)) is self:
            del _BUFFERS[id(self._raw)]

    def _write_out(self) -> None:
        self._due = time.monotonic() + self._interval_s
        if not self._pending:
            return
        data, self._pending = bytes(self._pending), bytearray()
        try:
            self._raw.write(data)
            self._raw.flush()
        except (OSError, ValueError):  # the stream is gone (closed pipe, exit): nothing to do
            pass

    def _tick(self) -> None:
        while not self._closed.wait(self._interval_s):
            self.drain()


# one buffer per stream, whichever configure() comes first (the dev command configures twice)
_BUFFERS: dict[int, LineBuffer] = {}


def drain() -> None:
    """Write out every buffer's lines now: before anything is written to the same stream
    directly (the command line's last word on an error), so the order stays."""
    for buffer in list(_BUFFERS.values()):
        buffer.drain()


class HotLine:
    """The one line per request of a hot path (``webhook.post``), rendered without
    structlog's machinery: the same JSON line (the context's fields, ``level``, an ISO UTC
    ``timestamp``, ids masked by :func:`redact`) into the same buffer, in about a third of the
    time. Only for JSON lines at ``info``; elsewhere it goes through structlog."""

    def __init__(self, buffer: LineBuffer | None, enabled: bool) -> None:
        self._buffer = buffer
        self._enabled = enabled
        self._second = -1
        self._stamp = ""

    def info(self, event: str, **fields: Any) -> None:
        if not self._enabled:
            return
        if self._buffer is None:
            structlog.get_logger("wawindow").info(event, **fields)
            return
        line = {**structlog.contextvars.get_contextvars(), **fields, "event": event}
        line["level"] = "info"
        line["timestamp"] = self._now()
        redact(None, "info", line)
        self._buffer.write(orjson.dumps(line) + b"\n")

    def _now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # the date and time change once a second
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1e6):06d}Z"


# the hot paths' line of the last configure() (a console or none yet: through structlog)
_HOT = [HotLine(None, enabled=True)]


def hot_line() -> HotLine:
    """Where a hot path writes its per-request line (see :class:`HotLine`)."""
    return _HOT[0]


def _buffer_for(raw: IO[bytes]) -> LineBuffer:
    buffer = _BUFFERS.get(id(raw))
    if buffer is None:
        buffer = _BUFFERS[id(raw)] = LineBuffer(raw)
    return buffer


def configure(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    for_people: bool = False,
    library_log: Path | None = None,
) -> LineBuffer | None:
    """Configure structlog for the process: JSON lines, or a console renderer on a TTY. The
    standard library's loggers (aiokafka, aiohttp, redis) go through the same processors
    (masking included) into the same stream, as JSON lines with their ``logger`` name.
    Returns the :class:`LineBuffer` that JSON lines go through (None on a console).

    ``for_people`` (the commands a person runs in a terminal, ``dev`` among them): lines are
    rendered for reading unless ``fmt`` is ``json``, TTY or not, and the libraries' lines stay
    out of the stream: as JSON lines in ``library_log`` when given, else nowhere (the command
    says in one line of its own what failed)."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and (for_people or stream.isatty()))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    processors: list[Any] = [*shared, structlog.processors.format_exc_info]
    buffer: LineBuffer | None = None
    if console:
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty()))
        factory: Any = structlog.PrintLoggerFactory(stream)
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        buffer = _buffer_for(stream.buffer)
        factory = structlog.BytesLoggerFactory(buffer)  # type: ignore[arg-type]
    threshold = logging.getLevelNamesMapping()[level.upper()]
    _HOT[0] = HotLine(buffer, enabled=threshold <= logging.INFO)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # aiokafka, aiohttp and redis log through the standard library: their warnings and
    # errors, as lines of the same shape in the same stream
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if console
        else structlog.processors.JSONRenderer(serializer=_json_text)
    )
    handler: logging.Handler
    if not for_people:
        handler = logging.StreamHandler(buffer or stream)
    elif library_log is not None:
        library_log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(library_log, encoding="utf-8")
        renderer = structlog.processors.JSONRenderer(serializer=_json_text)
    else:  # not even Python's last resort, which writes warnings to stderr
        handler = logging.NullHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    return buffer


@contextlib.contextmanager
def libraries_quiet() -> Iterator[None]:
    """The standard library's loggers (aiokafka, redis, asyncio) write nothing meanwhile:
    while a process starts, what fails is said once, in the error that stops it."""
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        root.setLevel(saved)


def _json_text(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()
