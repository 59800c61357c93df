"""The receiver's aiohttp application: ``GET/POST /webhook``, ``/healthz``, ``/readyz``.

``POST /webhook`` answers ``200`` only once every event of the body is acknowledged by
Kafka:

1. read the raw body, at most ``max_body_bytes`` (``413`` beyond); a ``Content-Encoding``
   aiohttp does not decode, or a body it cannot decode, is ``400`` with nothing stored (the
   bytes whose signature would be checked are unknown, so it is not a signed body);
2. verify ``X-Hub-Signature-256`` over those exact bytes (``401``, nothing stored);
3. split it into normalized events (:mod:`wawindow.ingest.split`);
4. publish the events to ``webhook-events`` and, when any part could not be read, the whole
   body to ``dead-letter`` with the reason, in one all-or-nothing wait;
5. ``200`` when Kafka acknowledged all of it, ``503`` when it did not in time (Meta retries).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import hdrs, web

from wawindow import logs
from wawindow.answers import error, unreadable
from wawindow.config import Settings
from wawindow.errors import KafkaUnavailable, Unreadable
from wawindow.ingest import signature
from wawindow.ingest.split import Split, SplitOptions, normalize_keyword, split_body
from wawindow.kafka.publisher import PUBLISHER, Record
from wawindow.kafka.topics import MAX_RECORD_BYTES
from wawindow.keys import Topics
from wawindow.metrics import METRICS, Metrics

log = structlog.get_logger("wawindow.ingest")


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """What the handlers need from the settings, prepared once."""

    secrets: tuple[str, ...]
    verify_token: str
    max_body_bytes: int
    topics: Topics
    split_options: SplitOptions
    line: logs.HotLine  # where each POST's webhook.post line goes (logs.configure's)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReceiverConfig:
        settings.require("app_secrets", "verify_token")
        assert settings.verify_token is not None
        return cls(
            secrets=tuple(s.value for s in settings.app_secrets),
            verify_token=settings.verify_token.value,
            max_body_bytes=settings.max_body_bytes,
            topics=Topics(settings.topic_prefix),
            split_options=SplitOptions(
                keep_content=settings.keep_content,
                opt_out_keywords=frozenset(normalize_keyword(k) for k in settings.opt_out_keywords),
            ),
            line=logs.hot_line(),
        )


CONFIG = web.AppKey("config", ReceiverConfig)
# what a dead-letter record keeps of a body, whole below it (the topic takes MAX_RECORD_BYTES)
DEAD_LETTER_BODY_BYTES = MAX_RECORD_BYTES - 256 * 1024


def add_routes(app: web.Application) -> None:
    """Mount the receiver's routes on ``app`` (which must hold CONFIG, PUBLISHER, METRICS)."""
    app.router.add_get("/webhook", handshake)
    app.router.add_post("/webhook", receive)


def _refuse(
    metrics: Metrics,
    started: float,
    outcome: str,
    status: int,
    detail: str,
    code: str | None = None,
    **fields: Any,
) -> web.Response:
    """Count, log and answer a POST the receiver does not take: one line (a warning, an
    error for a 5xx) with what says why, and the JSON error shape (``code``, default the
    outcome)."""
    _answered(metrics, started, outcome, status)
    emit = log.error if status >= 500 else log.warning
    emit(
        "webhook.post",
        path="/webhook",
        outcome=outcome,
        status=status,
        **fields,
        latency_ms=_ms(started),
    )
    return error(status, code or outcome, detail)


async def handshake(request: web.Request) -> web.Response:
    """Meta's verification GET: echo ``hub.challenge`` when the verify token matches."""
    config = request.app[CONFIG]
    query = request.query
    token = query.get("hub.verify_token", "")
    if query.get("hub.mode") == "subscribe" and _same(token, config.verify_token):
        log.info("webhook.handshake", outcome="verified")
        return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")
    log.warning("webhook.handshake", outcome="refused", mode=query.get("hub.mode"))
    return web.Response(status=403, text="forbidden", content_type="text/plain")


async def receive(request: web.Request) -> web.Response:
    """Meta's event POST; see the module docstring for the order of things."""
    started = time.perf_counter()
    config = request.app[CONFIG]
    metrics = request.app[METRICS]

    try:
        raw = await _read_limited(request, config.max_body_bytes)
    except UnreadableBody as exc:
        refused = _refuse(
            metrics, started, exc.code, 400, exc.detail, content_encoding=exc.coding[:64]
        )
        refused.force_close()  # what is left of the body on the connection is unknown
        return refused
    if raw is None:
        detail = f"the limit is {config.max_body_bytes} bytes"
        return _refuse(
            metrics, started, "too_large", 413, detail, "payload_too_large",
            content_length=request.content_length,
        )  # fmt: skip

    metrics.body_bytes.observe(len(raw))
    header = request.headers.get(signature.HEADER)
    if not signature.verify(raw, header, config.secrets):
        which = "missing" if not header else "mismatch"
        metrics.child(metrics.signature_failures, which).inc()
        detail = f"{signature.HEADER} is missing or wrong"
        return _refuse(
            metrics, started, "bad_signature", 401, detail, signature=which, bytes=len(raw)
        )

    received_at_ms = int(time.time() * 1000)
    split = split_body(raw, received_at_ms, config.split_options)
    records = _records(config.topics, split, raw, received_at_ms)
    kafka_started = time.perf_counter()
    try:
        await request.app[PUBLISHER].publish(records)
    except KafkaUnavailable as exc:
        detail = "events not stored; retry later"
        return _refuse(
            metrics, started, "kafka_unavailable", 503, detail,
            events=len(split.events), bytes=len(raw), error=str(exc),
        )  # fmt: skip

    metrics.produce_seconds.observe(time.perf_counter() - kafka_started)
    outcome = "dead_lettered" if split.rejected else "partial" if split.problems else "accepted"
    kinds, reason = _kinds(split), split.reason
    for kind, n in kinds.items():
        metrics.child(metrics.webhook_events, kind).inc(n)
    if reason is not None:
        metrics.child(metrics.dead_letters, "webhook").inc()
    _answered(metrics, started, outcome, 200)
    config.line.info(
        "webhook.post",
        path="/webhook",
        outcome=outcome,
        status=200,
        events=len(split.events),
        kinds=kinds,
        reason=reason,
        bytes=len(raw),
        kafka_ms=_ms(kafka_started),
        latency_ms=_ms(started),
    )
    return web.Response(text="ok", content_type="text/plain")


# -- helpers -------------------------------------------------------------------------------


def _records(topics: Topics, split: Split, raw: bytes, received_at_ms: int) -> list[Record]:
    records = [
        Record(topics.webhook_events, event.encode(), event.key.encode()) for event in split.events
    ]
    reason = split.reason
    if reason is not None:
        headers: tuple[tuple[str, bytes], ...] = (
            ("reason", reason[:4096].encode()),
            ("source", b"webhook"),
            ("received_at_ms", str(received_at_ms).encode()),
        )
        kept = raw
        if len(raw) > DEAD_LETTER_BODY_BYTES:  # larger than the topic takes: digest, excerpt
            kept = raw[:DEAD_LETTER_BODY_BYTES]
            headers += (
                ("truncated_from_bytes", str(len(raw)).encode()),
                ("sha256", hashlib.sha256(raw).hexdigest().encode()),
            )
        records.append(Record(topics.dead_letter, kept, None, headers))
    return records


# the codings aiohttp decodes before a handler reads the body (it refuses br and zstd itself,
# with a plain-text 400, when their libraries are missing); none, or identity, is as sent
DECODED = frozenset({"gzip", "deflate", "br", "zstd"})


class UnreadableBody(Unreadable):
    """A body that cannot be read: an unknown ``Content-Encoding`` (or several), or bytes not
    in the coding named. Its signature cannot be checked, so nothing of it is stored."""

    def __init__(self, code: str, detail: str, coding: str) -> None:
        super().__init__(detail)
        self.code, self.detail, self.coding = code, detail, coding


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body as aiohttp decoded it from its Content-Encoding, or None when it is larger
    than ``limit``: checked before reading when Content-Length says so, and on the decoded
    bytes while reading. Raises :class:`UnreadableBody`."""
    coding = ", ".join(request.headers.getall(hdrs.CONTENT_ENCODING, ()))
    name = coding.lower() if coding.isascii() else coding  # as aiohttp compares it
    if name not in ("", "identity") and name not in DECODED:
        raise UnreadableBody(
            "unsupported_encoding", f"Content-Encoding {coding[:64]!r} is not supported", coding
        )
    try:
        if request.content_length is not None:
            if request.content_length > limit:
                return None
            return await request.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)
    except web.HTTPRequestEntityTooLarge:  # the limit is the app's client_max_size, decoded
        return None
    except web.RequestPayloadError:  # not in the coding it names (or broken framing)
        raise UnreadableBody("unreadable_body", unreadable(request), coding) from None


def _kinds(split: Split) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in split.events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    return counts


def _answered(metrics: Metrics, started: float, outcome: str, status: int) -> None:
    metrics.child(metrics.webhook_requests, outcome, str(status)).inc()
    metrics.ack_seconds.observe(time.perf_counter() - started)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
