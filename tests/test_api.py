"""The senders' API against real Redis state, built by the real receiver, Kafka and worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.apps import create_api_app
from tests.conftest import APP_SECRET, SUPPRESSION_KEY, VERIFY_TOKEN
from tests.engine_harness import HOUR, Scenario
from wawindow.config import Settings
from wawindow.dev import samples
from wawindow.kafka.publisher import Publisher
from wawindow.service.app import ROLES, build_app

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

PN = samples.PHONE_NUMBER_ID
WA = "16505551234"
ALL = "all-seeing-token"
MINE = "limited-token"
OTHERS = "other-tenant-token"

ApiClient = TestClient[web.Request, web.Application]


@pytest.fixture
async def api(s: Scenario) -> AsyncIterator[ApiClient]:
    settings = Settings.from_env(
        {
            "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
            "WAWINDOW_API_TOKENS": f"{ALL},{MINE}={samples.WABA_ID},{OTHERS}=999|998",
        }
    )
    client: ApiClient = TestClient(TestServer(create_api_app(settings, s.store)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def get(api: ApiClient, path: str, token: str | None = ALL, **params: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await api.get(path, params=params, headers=headers)
    return response.status, await response.json()


async def test_v1_needs_a_valid_token(api: ApiClient) -> None:
    for token in (None, "wrong"):
        status, body = await get(api, f"/v1/windows/{PN}/{WA}", token)
        assert (status, body["error"]) == (401, "unauthorized")


async def test_a_missing_token_and_one_matching_none_are_told_apart(api: ApiClient) -> None:
    sent = {
        "none": {},
        "not bearer": {"Authorization": f"Basic {ALL}"},
        "empty": {"Authorization": "Bearer "},
        "unknown": {"Authorization": "Bearer wrong"},
        "another case": {"Authorization": f"Bearer {ALL.upper()}"},
    }
    answers = {}
    for name, headers in sent.items():
        response = await api.get(f"/v1/windows/{PN}/{WA}", headers=headers)
        answers[name] = (response.status, await response.json())

    missing = (401, {"error": "unauthorized", "detail": "send Authorization: Bearer <token>"})
    unknown = (401, {"error": "unauthorized", "detail": "the bearer token is not recognised"})
    assert answers == {
        "none": missing,
        "not bearer": missing,
        "empty": missing,
        "unknown": unknown,
        "another case": unknown,
    }


@pytest.mark.parametrize("roles", [("webhook",), ("worker",), ("api",), ROLES], ids=str)
async def test_unknown_paths_and_methods_answer_the_error_shape_in_every_role(
    s: Scenario, roles: tuple[str, ...]
) -> None:
    settings = Settings.from_env(
        {
            "WAWINDOW_KAFKA_BOOTSTRAP": s.settings.kafka_bootstrap or "",
            "WAWINDOW_TOPIC_PREFIX": s.settings.topic_prefix,
            "WAWINDOW_APP_SECRETS": APP_SECRET,
            "WAWINDOW_VERIFY_TOKEN": VERIFY_TOKEN,
            "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
            "WAWINDOW_API_TOKENS": ALL,
        }
    )
    publisher = Publisher(settings.kafka, ack_timeout_ms=3000)
    app = build_app(settings, roles, publisher=publisher, store=s.store)
    client: ApiClient = TestClient(TestServer(app))
    await publisher.start()
    await client.start_server()
    try:
        answers = {}
        for method, path in [("GET", "/nowhere"), ("POST", "/"), ("DELETE", "/healthz"),
                             ("POST", "/metrics"), ("PUT", "/openapi.json")]:  # fmt: skip
            response = await client.request(method, path)
            answers[(method, path)] = (response.status, await response.json())
            if response.status == 405:
                assert response.headers["Allow"] in ("GET,HEAD", "HEAD,GET")
        probes = [(await client.get(p)).status for p in ("/healthz", "/readyz", "/metrics")]
        served = await (await client.get("/openapi.json")).json()
    finally:
        await client.close()
        await publisher.stop()

    assert answers == {
        ("GET", "/nowhere"): (404, {"error": "not_found", "detail": "no endpoint at /nowhere"}),
        ("POST", "/"): (404, {"error": "not_found", "detail": "no endpoint at /"}),
        **{
            (m, p): (
                405,
                {"error": "method_not_allowed", "detail": f"{m} {p}: allowed are GET, HEAD"},
            )
            for m, p in [("DELETE", "/healthz"), ("POST", "/metrics"), ("PUT", "/openapi.json")]
        },
    }
    assert probes == [200, 200, 200]
    assert "paths" in served


async def test_the_api_and_the_receiver_answer_their_own_unknown_paths_and_methods(
    s: Scenario, api: ApiClient
) -> None:
    headers = {"Authorization": f"Bearer {ALL}"}
    nowhere = await api.get("/v1/nowhere", headers=headers)
    stranger = await api.get("/v1/nowhere")  # the token first: no path is shown to a stranger
    post = await api.post("/v1/send-check", headers=headers)
    put = await s.receiver.put("/webhook", data=b"{}")

    assert (nowhere.status, await nowhere.json()) == (
        404,
        {"error": "not_found", "detail": "no endpoint at /v1/nowhere"},
    )
    assert (stranger.status, (await stranger.json())["error"]) == (401, "unauthorized")
    assert (post.status, (await post.json())["error"]) == (405, "method_not_allowed")
    assert set(post.headers["Allow"].split(",")) == {"GET", "HEAD"}
    assert (put.status, (await put.json())["error"]) == (405, "method_not_allowed")
    assert set(put.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


async def test_a_body_not_in_its_content_encoding_is_400_not_500(s: Scenario) -> None:
    """aiohttp decodes bodies before the handler reads them; one that cannot be decoded is the
    caller's fault, in the error shape, on the API as on the receiver."""
    settings = Settings.from_env(
        {"WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY, "WAWINDOW_API_WRITE_TOKENS": ALL}
    )
    client: ApiClient = TestClient(TestServer(create_api_app(settings, s.store)))
    await client.start_server()
    try:
        response = await client.post(
            "/v1/consents",
            data=b'{"not": "gzip"}',
            headers={"Authorization": f"Bearer {ALL}", "Content-Encoding": "gzip"},
        )
        answer = (response.status, await response.json())
    finally:
        await client.close()

    assert answer == (400, {"error": "unreadable_body", "detail": "the body is not valid gzip"})


async def test_windows_shows_the_users_state_and_404_for_a_stranger(
    s: Scenario, api: ApiClient
) -> None:
    await s.inbound("wamid.in", s.now - HOUR)
    await s.process()

    status, body = await get(api, f"/v1/windows/{PN}/{WA}")
    missing, error = await get(api, f"/v1/windows/{PN}/19999999999")

    assert status == 200
    assert body["service_window"]["open"] is True
    assert (missing, error["error"]) == (404, "not_found")


async def test_a_limited_token_sees_its_own_waba_and_nothing_else(
    s: Scenario, api: ApiClient
) -> None:
    await s.inbound("wamid.in", s.now - HOUR)
    await s.process()

    mine, _ = await get(api, f"/v1/windows/{PN}/{WA}", MINE)
    theirs, body = await get(api, f"/v1/windows/{PN}/{WA}", OTHERS)
    check, _ = await get(
        api, "/v1/send-check", OTHERS, phone_number_id=PN, user=WA, kind="free_form"
    )

    assert mine == 200
    assert (theirs, body["error"]) == (404, "not_found")
    assert check == 404


async def test_free_form_is_allowed_in_the_window_and_priced_by_todays_rules(
    s: Scenario, api: ApiClient
) -> None:
    await s.inbound("wamid.in", s.now - HOUR)
    await s.process()

    status, body = await get(api, "/v1/send-check", phone_number_id=PN, user=WA, kind="free_form")

    assert status == 200
    assert (body["allowed"], body["reason"], body["requires_template"]) == (True, None, False)
    assert body["service_window_expires_at"] is not None
    assert body["expected_charge"]["pricing_category"] == "service"


async def test_free_form_outside_the_window_needs_a_template(s: Scenario, api: ApiClient) -> None:
    await s.inbound("wamid.in", s.now - 30 * HOUR)
    await s.process()

    _, closed = await get(api, "/v1/send-check", phone_number_id=PN, user=WA, kind="free_form")
    _, never = await get(
        api, "/v1/send-check", phone_number_id=PN, user="19999999999", kind="free_form"
    )

    for body in (closed, never):
        assert (body["allowed"], body["reason"], body["requires_template"]) == (
            False,
            "window_closed_template_required",
            True,
        )


async def test_opt_outs_block_the_templates_they_cover(s: Scenario, api: ApiClient) -> None:
    await s.post(samples.preference(WA, "stop", s.now - 60))
    await s.process()

    _, marketing = await get(
        api, "/v1/send-check", phone_number_id=PN, user=WA, kind="template:marketing"
    )
    _, utility = await get(
        api, "/v1/send-check", phone_number_id=PN, user=WA, kind="template:utility"
    )

    assert (marketing["allowed"], marketing["reason"]) == (False, "marketing_opted_out")
    assert (utility["allowed"], utility["reason"]) == (True, None)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"user": WA, "kind": "free_form"}, "phone_number_id"),
        ({"phone_number_id": PN, "kind": "free_form"}, "user"),
        ({"phone_number_id": PN, "user": WA}, "kind"),
        ({"phone_number_id": PN, "user": WA, "kind": "template:fax"}, "kind"),
        ({"phone_number_id": PN, "user": WA, "kind": "template:marketing", "endpoint": "sms"},
         "endpoint"),
        # the Marketing Messages Lite API sends marketing templates only
        ({"phone_number_id": PN, "user": WA, "kind": "template:utility",
          "endpoint": "marketing_messages"}, "endpoint"),
    ],
)  # fmt: skip
async def test_bad_parameters_get_400_naming_the_parameter(
    api: ApiClient, params: dict[str, str], named: str
) -> None:
    status, body = await get(api, "/v1/send-check", **params)

    assert status == 400
    assert named in body["detail"]


# -- finance: /v1/counts ------------------------------------------------------------------


def utc(moment: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp())


async def inbound_at(s: Scenario, *moments: str) -> None:
    for i, moment in enumerate(moments):
        await s.inbound(f"wamid.c{i}", utc(moment), user=f"1650000{i:04d}")
    await s.process()


def inbound_rows(body: dict[str, Any]) -> dict[str, int]:
    return {
        r["period_start"]: r["count"] for r in body["rows"] if r["metric"] == "inbound_messages"
    }


async def test_counts_follow_a_23_hour_dst_day(s: Scenario, api: ApiClient) -> None:
    """New York springs forward on 8 Mar 2026: that local day has 23 hours."""
    await inbound_at(s, "2026-03-08T04:30Z", "2026-03-08T05:30Z", "2026-03-09T03:30Z")

    status, body = await get(
        api, "/v1/counts", **{"from": "2026-03-07", "to": "2026-03-10", "tz": "America/New_York"}
    )

    assert status == 200
    assert inbound_rows(body) == {"2026-03-07T00:00:00-05:00": 1, "2026-03-08T00:00:00-05:00": 2}


async def test_counts_keep_the_repeated_hour_of_a_25_hour_day_apart(
    s: Scenario, api: ApiClient
) -> None:
    """New York falls back on 1 Nov 2026: 01:00-02:00 happens twice."""
    await inbound_at(s, "2026-11-01T05:30Z", "2026-11-01T06:30Z")

    _, hours = await get(
        api,
        "/v1/counts",
        **{
            "from": "2026-11-01",
            "to": "2026-11-02",
            "tz": "America/New_York",
            "granularity": "hour",
        },
    )
    _, days = await get(
        api, "/v1/counts", **{"from": "2026-11-01", "to": "2026-11-02", "tz": "America/New_York"}
    )

    assert inbound_rows(hours) == {"2026-11-01T01:00:00-04:00": 1, "2026-11-01T01:00:00-05:00": 1}
    assert inbound_rows(days) == {"2026-11-01T00:00:00-04:00": 2}


async def test_counts_in_half_hour_offsets(s: Scenario, api: ApiClient) -> None:
    """Kolkata is +5:30 and Kathmandu +5:45: periods still start on their local boundaries."""
    await inbound_at(s, "2026-11-27T18:35Z", "2026-11-28T10:10Z", "2026-11-28T10:20Z")

    _, kolkata = await get(
        api, "/v1/counts", **{"from": "2026-11-28", "to": "2026-11-29", "tz": "Asia/Kolkata"}
    )
    _, kathmandu = await get(
        api,
        "/v1/counts",
        **{
            "from": "2026-11-28T15:00",
            "to": "2026-11-28T17:00",
            "tz": "Asia/Kathmandu",
            "granularity": "half_hour",
        },
    )

    assert inbound_rows(kolkata) == {"2026-11-28T00:00:00+05:30": 3}
    assert inbound_rows(kathmandu) == {
        "2026-11-28T15:30:00+05:45": 1,
        "2026-11-28T16:00:00+05:45": 1,
    }


async def test_counts_as_csv_and_in_metas_shape(s: Scenario, api: ApiClient) -> None:
    t = utc("2026-11-28T12:00Z")
    await s.status("wamid.o1", "delivered", t, pricing=samples.pmp_pricing("marketing", "regular"))
    await s.status(
        "wamid.o2", "delivered", t + 60, pricing=samples.pmp_pricing("marketing", "regular")
    )
    await s.process()
    params = {"from": "2026-11-28", "to": "2026-11-29"}

    response = await api.get(
        "/v1/counts", params={**params, "format": "csv"}, headers={"Authorization": f"Bearer {ALL}"}
    )
    text = await response.text()
    _, meta = await get(api, "/v1/counts", **params, format="meta")

    assert response.headers["Content-Type"].startswith("text/csv")
    header, *lines = text.strip().splitlines()
    assert header.split(",")[:4] == ["period_start", "waba_id", "phone_number_id", "metric"]
    assert any(
        line.startswith("2026-11-28T00:00:00+00:00")
        and "messages_delivered" in line
        and line.endswith(",2")
        for line in lines
    )
    [point] = meta["pricing_analytics"]["data"][0]["data_points"]
    assert point == {
        "start": utc("2026-11-28T00:00Z"),
        "end": utc("2026-11-29T00:00Z"),
        "phone_number": PN,
        "pricing_category": "MARKETING",
        "pricing_type": "REGULAR",
        "volume": 2,
    }


async def test_a_limited_token_counts_only_its_wabas(s: Scenario, api: ApiClient) -> None:
    await inbound_at(s, "2026-11-28T10:00Z")
    params = {"from": "2026-11-28", "to": "2026-11-29"}

    _, mine = await get(api, "/v1/counts", MINE, **params)
    _, theirs = await get(api, "/v1/counts", OTHERS, **params)
    status, _ = await get(api, "/v1/counts", OTHERS, **params, waba_id=samples.WABA_ID)

    assert inbound_rows(mine) == {"2026-11-28T00:00:00+00:00": 1}
    assert theirs["rows"] == []
    assert status == 404


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"to": "2026-11-29"}, "from"),
        ({"from": "yesterday", "to": "2026-11-29"}, "from"),
        ({"from": "2026-11-28", "to": "2026-11-29", "tz": "Mars/Olympus"}, "tz"),
        ({"from": "2026-11-28", "to": "2026-11-29", "granularity": "week"}, "granularity"),
        ({"from": "2026-11-29", "to": "2026-11-28"}, "to"),
        ({"from": "2026-11-28", "to": "2026-11-29", "format": "xml"}, "format"),
    ],
)
async def test_bad_counts_parameters_get_400_naming_the_parameter(
    api: ApiClient, params: dict[str, str], named: str
) -> None:
    status, body = await get(api, "/v1/counts", **params)

    assert status == 400
    assert body["detail"].startswith(named)


async def test_the_operators_pricing_rules_file_from_the_environment_changes_the_estimate(
    s: Scenario, tmp_path: Path
) -> None:
    await s.inbound("wamid.in", s.now - 60, user=WA)
    await s.process()
    rules = tmp_path / "rules.json"
    since = datetime.fromtimestamp(s.now - 86400, UTC).date().isoformat()
    rules.write_text(
        f'[{{"since": "{since}", "pricing_model": "PMP", "free_in_service_window": ["free_form"]}}]'
    )
    params = {"phone_number_id": PN, "user": WA, "kind": "free_form"}
    answers = []
    for extra in ({}, {"WAWINDOW_PRICING_RULES_FILE": str(rules)}):
        settings = Settings.from_env(
            {"WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY, "WAWINDOW_API_TOKENS": ALL, **extra}
        )
        client: ApiClient = TestClient(TestServer(create_api_app(settings, s.store)))
        await client.start_server()
        try:
            answers.append(await (await client.get(
                "/v1/send-check", params=params, headers={"Authorization": f"Bearer {ALL}"}
            )).json())  # fmt: skip
        finally:
            await client.close()

    built_in, operators = (a["expected_charge"]["pricing_type"] for a in answers)
    assert (built_in, operators) == ("regular", "free_customer_service")


async def api_with_rate_card(s: Scenario, tmp_path: Path, card: str) -> ApiClient:
    """A started API whose rate card (``WAWINDOW_RATE_CARD_FILE``) is ``card``."""
    path = tmp_path / "rates.json"
    path.write_text(card)
    settings = Settings.from_env(
        {
            "WAWINDOW_SUPPRESSION_KEY": SUPPRESSION_KEY,
            "WAWINDOW_API_TOKENS": ALL,
            "WAWINDOW_RATE_CARD_FILE": str(path),
        }
    )
    client: ApiClient = TestClient(TestServer(create_api_app(settings, s.store)))
    await client.start_server()
    return client


async def test_send_check_prices_a_message_from_the_operators_rate_card(
    s: Scenario, tmp_path: Path
) -> None:
    await s.inbound("wamid.in", s.now - 60, user=WA)
    await s.process()
    client = await api_with_rate_card(
        s,
        tmp_path,
        '{"cards": [{"since": "2026-10-01", "currency": "USD", "markets": ['
        '{"market": "North America", "calling_codes": ["1"],'
        ' "rates": {"marketing": 0.025, "service": 0.0034}}]}]}',
    )
    try:
        answers = {}
        for user, kind in ((WA, "template:marketing"), ("19995550000", "template:marketing"),
                           ("US.13491208655302741918", "template:marketing"),
                           (WA, "template:authentication")):  # fmt: skip
            response = await client.get(
                "/v1/send-check",
                params={"phone_number_id": PN, "user": user, "kind": kind},
                headers={"Authorization": f"Bearer {ALL}"},
            )
            answers[(user, kind)] = (await response.json())["expected_charge"]["estimate"]
    finally:
        await client.close()

    known = answers[(WA, "template:marketing")]
    assert known["amount"] == "0.025"
    assert (known["currency"], known["market"]) == ("USD", "North America")
    # a user never seen is placed by the number asked about
    assert answers[("19995550000", "template:marketing")]["amount"] == "0.025"
    assert answers[("US.13491208655302741918", "template:marketing")] is None  # no number
    assert answers[(WA, "template:authentication")] is None  # no rate for it


async def test_send_check_places_bsuid_users_by_country_and_bills_authentication_by_the_waba(
    s: Scenario, tmp_path: Path
) -> None:
    india, bsuid = "919876543210", "US.13491208655302741918"
    await s.inbound("wamid.in", s.now - 60, user=india)
    message = samples.text_message("wamid.b", s.now - 60, wa_id=None, user_id=bsuid)
    await s.post(samples.messages_change(messages=[message]))
    await s.process()
    card = json.dumps({
        "cards": [{"since": "2026-10-01", "currency": "USD", "markets": [
            {"market": "North America", "calling_codes": ["1"], "countries": ["US", "CA"],
             "rates": {"marketing": 0.025}},
            {"market": "India", "calling_codes": ["91"], "countries": ["IN"],
             "rates": {"authentication": 0.0014, "authentication_international": 0.028}}]}],
        # the sending WABA is US-based and eligible since yesterday
        "wabas": {samples.WABA_ID: {
            "primary_business_location": "US",
            "auth_international_rate_eligibility": {"start_time": s.now - 86400}}},
    })  # fmt: skip
    client = await api_with_rate_card(s, tmp_path, card)
    try:
        answers = {}
        for user, kind in ((bsuid, "template:marketing"), ("CA.0042", "template:marketing"),
                           (india, "template:authentication"),
                           ("919999999999", "template:authentication")):  # fmt: skip
            response = await client.get(
                "/v1/send-check",
                params={"phone_number_id": PN, "user": user, "kind": kind},
                headers={"Authorization": f"Bearer {ALL}"},
            )
            estimate = (await response.json())["expected_charge"]["estimate"]
            answers[user] = estimate and (estimate["market"], estimate["rate"], estimate["amount"])
    finally:
        await client.close()

    # a stored user known only by BSUID, and one never seen, asked about by BSUID
    assert answers[bsuid] == ("North America", "marketing", "0.025")
    assert answers["CA.0042"] == ("North America", "marketing", "0.025")
    # the stored user's WABA is eligible and based elsewhere: Meta's international rate
    assert answers[india] == ("India", "authentication_international", "0.028")
    # a user never seen: which WABA sends is not known, so neither is the rate
    assert answers["919999999999"] is None


async def test_a_marketing_template_sent_through_marketing_messages_is_priced_as_marketing_lite(
    s: Scenario, tmp_path: Path
) -> None:
    await s.post(samples.preference(WA, "stop", s.now - 60))
    await s.process()
    client = await api_with_rate_card(
        s,
        tmp_path,
        '{"cards": [{"since": "2026-10-01", "currency": "USD", "markets": ['
        '{"market": "North America", "calling_codes": ["1"],'
        ' "rates": {"marketing": 0.025, "marketing_lite": 0.0201}}]}]}',
    )
    try:
        answers = {}
        for endpoint in ("messages", "marketing_messages"):
            response = await client.get(
                "/v1/send-check",
                params={"phone_number_id": PN, "user": WA, "kind": "template:marketing",
                        "endpoint": endpoint},
                headers={"Authorization": f"Bearer {ALL}"},
            )  # fmt: skip
            answers[endpoint] = await response.json()
    finally:
        await client.close()

    estimates = {e: a["expected_charge"]["estimate"] for e, a in answers.items()}
    priced = {e: (found["rate"], found["amount"]) for e, found in estimates.items()}
    assert priced == {"messages": ("marketing", "0.025"),
                      "marketing_messages": ("marketing_lite", "0.0201")}  # fmt: skip
    # still a marketing template: the user's stop to marketing holds, whatever the endpoint
    lite = answers["marketing_messages"]
    assert (lite["allowed"], lite["reason"]) == (False, "marketing_opted_out")
