"""Consent and erasure over HTTP: ``POST /v1/consents``, ``GET /v1/consents/{waba_id}/{user}``
and ``DELETE /v1/users/{waba_id}/{user}``.

A write is answered ``202`` with its id only once the change is on ``consent-events`` with
Kafka's ``acks=all`` (``503`` when Kafka cannot take it); the worker then applies it, like a
webhook. Writes need a token of ``WAWINDOW_API_WRITE_TOKENS`` (``403`` otherwise), and a
token limited to some WABAs sees and writes only those (``404`` for the others).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from wawindow.answers import error, unreadable_body
from wawindow.api.context import API, CALLER, PEOPLE, TOPICS
from wawindow.engine.views import consent_view
from wawindow.errors import BadField, KafkaUnavailable
from wawindow.kafka.consent_records import (
    RECORDED_WABA,
    consent_record,
    erasure_record,
    waba_and_user,
)
from wawindow.kafka.publisher import PUBLISHER, Record

# a consent change is a few hundred bytes; anything much larger is not one
MAX_BODY_BYTES = 64 * 1024


def add_consent_routes(app: web.Application) -> None:
    app.router.add_post("/v1/consents", post_consent)
    app.router.add_get("/v1/consents/{waba_id}/{user}", get_consent)
    app.router.add_delete("/v1/users/{waba_id}/{user}", delete_user)


def _may_see(request: web.Request, waba_id: str) -> bool:

    wabas = request[CALLER].wabas
    return wabas is None or waba_id in wabas


def _writer(request: web.Request) -> tuple[str | None, web.Response | None]:
    """Who writes (``api:<token digest>``), or the answer refusing a read-only token."""

    caller = request[CALLER]
    if not caller.write:
        return None, error(403, "forbidden", "this token may read but not write consent")
    return f"api:{caller.digest}", None


async def _publish(request: web.Request, rec: dict[str, Any]) -> web.Response:
    topic = request.app[TOPICS].consent_events
    record = Record(topic, orjson.dumps(rec), str(rec["event_id"]).encode())
    try:
        await request.app[PUBLISHER].publish([record])
    except KafkaUnavailable:
        return error(503, "kafka_unavailable", "not recorded; retry later")
    return web.json_response({"id": rec["event_id"]}, status=202)


async def _body(request: web.Request) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY_BYTES."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
    return b"".join(chunks)


async def post_consent(request: web.Request) -> web.Response:
    """Record an opt-in or an opt-out of a person at a WABA."""

    by, refused = _writer(request)
    if refused is not None or by is None:
        return refused or error(403, "forbidden", "")
    try:
        raw = await _body(request)
    except web.RequestPayloadError:  # not in the Content-Encoding it names
        return unreadable_body(request)
    if raw is None:
        return error(413, "payload_too_large", f"the limit is {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw)  # JSON is UTF-8 whatever charset the request names
    except orjson.JSONDecodeError:
        return error(400, "bad_field", "body: not JSON")
    categories = request.app[API].categories
    try:
        rec = consent_record(body, int(time.time()), categories, by)
    except BadField as exc:
        return error(400, "bad_field", str(exc))
    if not _may_see(request, rec["waba_id"]):
        return error(404, "not_found", f"no WABA {rec['waba_id']}")
    return await _publish(request, rec)


async def delete_user(request: web.Request) -> web.Response:
    """Erase a person at a WABA: windows, consent, ledger references, id links."""
    by, refused = _writer(request)
    if refused is not None or by is None:
        return refused or error(403, "forbidden", "")
    waba_id, user = request.match_info["waba_id"], request.match_info["user"]
    try:
        rec = erasure_record(waba_id, user, int(time.time()), by)
    except BadField as exc:
        return error(400, "bad_parameter", str(exc))
    if not _may_see(request, waba_id):
        return error(404, "not_found", f"no WABA {waba_id}")
    return await _publish(request, rec)


async def get_consent(request: web.Request) -> web.Response:
    """A person's consent per category, and its history newest first."""

    waba_id, user = request.match_info["waba_id"], request.match_info["user"]
    try:
        waba_and_user(waba_id, user, RECORDED_WABA)
    except BadField as exc:
        return error(400, "bad_parameter", str(exc))
    if not _may_see(request, waba_id):
        return error(404, "not_found", f"no user {user} at WABA {waba_id}")
    on_file = await request.app[PEOPLE].on_file(waba_id, user)
    if not on_file.known:
        return error(404, "not_found", f"no user {user} at WABA {waba_id}")
    return web.json_response(consent_view(waba_id, user, on_file, request.app[API].categories))
