"""The senders' HTTP API: ``GET /v1/windows/{phone_number_id}/{user}``, ``GET /v1/send-check``,
finance's ``GET /v1/counts`` and consent (:mod:`wawindow.api.consents`), behind bearer tokens
(each optionally limited to some WABAs; writes need a write token)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from wawindow.answers import UNROUTED, error
from wawindow.api.consents import add_consent_routes
from wawindow.api.context import API, CALLER, PEOPLE, STORE, Caller
from wawindow.engine.views import window_view
from wawindow.errors import BadParameter
from wawindow.finance.counts import (
    CSV_COLUMNS,
    GRANULARITIES,
    MAX_RANGE_DAYS,
    CountsQuery,
    counts,
    meta_data_points,
    parse_instant,
)
from wawindow.finance.pricing import KINDS, expected_charge
from wawindow.finance.ratecard import ENDPOINTS, estimate, rate_for
from wawindow.metrics import METRICS
from wawindow.rules.consent import Consent, Decision
from wawindow.rules.send_check import decide
from wawindow.rules.suppression import Suppression

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_api_routes(app: web.Application) -> None:
    """Mount ``/v1`` on ``app`` (which must hold API, STORE and METRICS)."""
    app.middlewares.append(_observe)
    app.middlewares.append(_auth)
    app.router.add_get("/v1/windows/{phone_number_id}/{user}", windows)
    app.router.add_get("/v1/send-check", send_check)
    app.router.add_get("/v1/counts", counts_handler)
    add_consent_routes(app)


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every ``/v1`` answer by route template (never by user or number)."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = "unmatched" if resource is None or resource.name == UNROUTED else resource.canonical
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[METRICS]
        metrics.api_requests.labels(route, str(status)).inc()
        metrics.api_seconds.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v1/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip().encode() if header.startswith("Bearer ") else b""
    match = None
    for token in request.app[API].tokens:
        if hmac.compare_digest(given, token.token.value.encode()) and given:
            match = token
    if match is None:
        if given:  # a bearer token, but none of the tokens the service was given
            return error(401, "unauthorized", "the bearer token is not recognised")
        return error(401, "unauthorized", "send Authorization: Bearer <token>")
    digest = hashlib.sha256(match.token.value.encode()).hexdigest()[:12]
    request[CALLER] = Caller(match.waba_ids, match.write, digest)
    return await handler(request)


async def _view(request: web.Request, phone_number_id: str, user: str) -> dict[str, Any] | None:
    """The user's view, or None when unknown or not this token's to see (both answer 404)."""
    view = await window_view(request.app[STORE], phone_number_id, user, int(time.time()))
    allowed = request[CALLER].wabas
    if view is None or (allowed is not None and view["waba_id"] not in allowed):
        return None
    return view


def _may_see(request: web.Request, waba_id: str) -> bool:
    allowed = request[CALLER].wabas
    return allowed is None or waba_id in allowed


async def windows(request: web.Request) -> web.Response:
    """A user's service window, free entry point window, open conversations and opt-outs."""
    number, user = request.match_info["phone_number_id"], request.match_info["user"]
    view = await _view(request, number, user)
    if view is None:
        return error(404, "not_found", f"no user {user} on number {number}")
    return web.json_response(view)


async def send_check(request: web.Request) -> web.Response:
    """May I send this user a message of this kind now, and what will it cost?"""
    q = request.query
    for name in ("phone_number_id", "user", "kind"):
        if not q.get(name):
            return error(400, "missing_parameter", f"{name} is required")
    kind = q["kind"]
    if kind not in KINDS:
        return error(400, "bad_parameter", f"kind must be one of {', '.join(KINDS)}")
    # the Meta endpoint the sender will send through changes the rate (marketing_lite), not
    # the kind of message: opt-outs and consent answer to the kind
    endpoint = q.get("endpoint", "messages")
    if endpoint not in ENDPOINTS:
        return error(400, "bad_parameter", f"endpoint must be one of {', '.join(ENDPOINTS)}")
    rate = rate_for(endpoint, "service" if kind == "free_form" else kind.removeprefix("template:"))
    if rate is None:
        return error(400, "bad_parameter", f"endpoint {endpoint} does not send {kind}")
    view = await _view(request, q["phone_number_id"], q["user"])
    waba: str | None = None  # the WABA named or the number's, once looked up
    if view is None and request[CALLER].wabas is not None:
        # a limited token may ask about a person never seen on the number (a first contact)
        # only for a WABA of its own: the number's, or the one it names
        waba = q.get("waba_id") or await request.app[PEOPLE].waba_of(q["phone_number_id"])
        if waba is None or not _may_see(request, waba):
            return error(404, "not_found", f"no user {q['user']} on number {q['phone_number_id']}")
    csw = (view or {}).get("service_window") or {}
    fep = (view or {}).get("entry_point_window") or {}
    csw_open, fep_open = bool(csw.get("open")), bool(fep.get("open"))
    now = int(time.time())
    config = request.app[API]
    consent_category = q.get("consent_category") or None
    if consent_category is not None and consent_category not in config.categories:
        shown = ", ".join(config.categories.shown)
        return error(400, "bad_parameter", f"consent_category must be one of {shown}")
    consent = None
    people = request.app[PEOPLE]
    suppressions: list[Suppression] = []
    decisions: list[Decision] = []
    if kind != "free_form":
        waba_id = (
            (view or {}).get("waba_id")
            or q.get("waba_id")
            or waba
            or await people.waba_of(q["phone_number_id"])
        )
        if waba_id is not None and _may_see(request, waba_id):
            # what erasures of the person kept (of every id the view names): one round trip
            known_ids = ((view or {}).get("user") or {}).values()
            ids = {q["user"], *(i for i in known_ids if isinstance(i, str))}
            if people.suppressions is not None:
                suppressions = await people.suppressions.entries(waba_id, ids)
            if config.consent_policy != "off" or suppressions:
                # every number of the WABA: an opt-out sent to one number holds for all
                decisions = (await people.on_file(waba_id, q["user"])).decisions
            if config.consent_policy != "off":
                consent = Consent.of(decisions)
    answer = decide(
        view,
        consent,
        config.consent_policy,
        kind,
        consent_category,
        suppressions,
        decisions,
        now,
    )
    charge = expected_charge(
        config.rules, kind, now, service_window_open=csw_open, entry_point_open=fep_open
    )
    # the market comes from the phone number (the stored wa_id, or the user asked about), else
    # from a BSUID's country; the sending WABA's standing decides authentication-international
    known = (view or {}).get("user") or {}
    wa_id, user_id = known.get("wa_id"), known.get("user_id")
    if wa_id is None and q["user"].isdigit():
        wa_id = q["user"]
    if user_id is None and not q["user"].isdigit():
        user_id = q["user"]
    charge["estimate"] = estimate(
        config.rate_cards,
        wa_id,
        rate,
        charge["billable"],
        now,
        user_id=user_id,
        waba_id=(view or {}).get("waba_id"),
    )
    return web.json_response(
        {
            "allowed": answer.allowed,
            "reason": answer.reason,
            "requires_template": answer.requires_template,
            "service_window_expires_at": csw.get("expires_at") if csw_open else None,
            "entry_point_window_expires_at": fep.get("expires_at") if fep_open else None,
            "expected_charge": charge,
            **({"consent": answer.consent} if answer.consent is not None else {}),
            **({"suppressed": True} if answer.suppressed else {}),
        }
    )


# -- finance ----------------------------------------------------------------------------------


def _counts_query(request: web.Request) -> tuple[CountsQuery, str]:
    q = request.query
    try:
        tz = ZoneInfo(q.get("tz", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise BadParameter("tz", f"{q.get('tz')!r} is not an IANA time zone name") from None
    start, end = parse_instant("from", q.get("from"), tz), parse_instant("to", q.get("to"), tz)
    if end <= start:
        raise BadParameter("to", "must be after from")
    if end - start > MAX_RANGE_DAYS * 86400:
        raise BadParameter("to", f"the range may span at most {MAX_RANGE_DAYS} days")
    granularity = q.get("granularity", "day")
    if granularity not in GRANULARITIES:
        raise BadParameter("granularity", f"must be one of {', '.join(GRANULARITIES)}")
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv", "meta"):
        raise BadParameter("format", "must be json, csv or meta")
    allowed = request[CALLER].wabas
    waba = q.get("waba_id")
    wabas: frozenset[str] | None = allowed
    if waba:
        wabas = frozenset({waba}) if allowed is None or waba in allowed else frozenset()
    query = CountsQuery(start, end, tz, granularity, wabas, q.get("phone_number_id") or None)
    return query, fmt


async def counts_handler(request: web.Request) -> web.StreamResponse:
    """Finance's counts by period of any time zone: JSON, CSV (streamed), or Meta's shape."""
    try:
        query, fmt = _counts_query(request)
    except BadParameter as exc:
        return error(400, "bad_parameter", str(exc))
    if query.waba_ids is not None and not query.waba_ids:
        return error(404, "not_found", f"no WABA {request.query.get('waba_id')}")
    rows = await counts(request.app[STORE].redis, query)
    if fmt == "meta":
        points = meta_data_points(rows, query.tz, query.granularity)
        return web.json_response({"pricing_analytics": {"data": [{"data_points": points}]}})
    if fmt == "csv":
        response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8"})
        await response.prepare(request)
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        for i, row in enumerate(rows, start=1):
            writer.writerow(row)
            if i % 500 == 0:
                await response.write(buffer.getvalue().encode())
                buffer.seek(0)
                buffer.truncate()
        await response.write(buffer.getvalue().encode())
        await response.write_eof()
        return response
    return web.json_response(
        {
            "from": datetime.fromtimestamp(query.start, query.tz).isoformat(),
            "to": datetime.fromtimestamp(query.end, query.tz).isoformat(),
            "tz": request.query.get("tz", "UTC"),
            "granularity": query.granularity,
            "rows": rows,
        }
    )
