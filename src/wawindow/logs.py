"""Logging: structlog configured once by the entry point, and masking helpers.

Library modules only call ``structlog.get_logger()``. Log lines never carry message text;
phone numbers and user ids pass through :func:`mask_id` before they reach a line, and the
:func:`redact` processor masks them anyway under the field names that usually hold them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

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


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog for the process: JSON lines, or a console renderer on a TTY. The
    standard library's loggers (aiokafka, aiohttp, redis) go through the same processors
    (masking included) into the same stream, as JSON lines with their ``logger`` name."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    processors: list[Any] = [*shared, structlog.processors.format_exc_info]
    if console:
        processors.append(structlog.dev.ConsoleRenderer())
        factory: Any = structlog.PrintLoggerFactory(stream)
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory = structlog.BytesLoggerFactory(stream.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
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
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


def _json_text(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()
