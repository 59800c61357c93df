"""The senders' API against real Redis state, built by the real receiver, Kafka and worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.engine_harness import HOUR, Scenario
from wawindow import samples
from wawindow.api.app import create_api_app
from wawindow.config import Settings

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
        {"WAWINDOW_API_TOKENS": f"{ALL},{MINE}={samples.WABA_ID},{OTHERS}=999|998"}
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
    ],
)
async def test_bad_parameters_get_400_naming_the_parameter(
    api: ApiClient, params: dict[str, str], named: str
) -> None:
    status, body = await get(api, "/v1/send-check", **params)

    assert status == 400
    assert named in body["detail"]
