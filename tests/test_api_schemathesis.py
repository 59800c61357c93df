"""Schemathesis against the running service: every operation of ``/openapi.json``, with
generated parameters, headers and bodies (valid and not), answered with a documented status,
content type and schema, and never a server error.

The document is the one the package serves; the calls go to a real ``wawindow run all``
process on the session's Kafka and Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis import checks

from tests.cliutil import run_all, wait_healthy
from tests.conftest import Services, examples, new_prefix
from tests.test_openapi import TOKEN, WRITE_TOKEN

DOC = json.loads((files("wawindow") / "api" / "openapi.json").read_text())
schema = schemathesis.openapi.from_dict(DOC)
pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture(scope="module")
def service(services: Services) -> Iterator[str]:
    with run_all(
        services,
        new_prefix(),
        4,
        WAWINDOW_API_TOKENS=TOKEN,
        WAWINDOW_API_WRITE_TOKENS=WRITE_TOKEN,
        WAWINDOW_CONSENT_POLICY="enforce",
        WAWINDOW_LOG_LEVEL="warning",
    ) as (base, proc):
        asyncio.run(wait_healthy(base, proc))
        yield base


@schema.parametrize()
@settings(max_examples=examples(25), deadline=None)
def test_every_operation_answers_as_documented(case: schemathesis.Case[Any], service: str) -> None:
    # a third of the cases carry no token, a third a read-only one and a third a write token,
    # so the routes behind them are reached too (and consent writes are refused, or taken)
    token = (None, TOKEN, WRITE_TOKEN)[
        hash(repr((case.path_parameters, case.query, case.body))) % 3
    ]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # the API has rules across parameters that a schema cannot say (``to`` after ``from``, at
    # most 400 days apart; ``endpoint=marketing_messages`` only for a marketing template), so
    # a schema-valid request may rightly be refused with a 400 naming the parameter
    case.call_and_validate(
        base_url=service, headers=headers, excluded_checks=[checks.positive_data_acceptance]
    )
