"""Log masking: ids masked, content dropped."""

from __future__ import annotations

from typing import Any

import pytest

from wawindow.logs import mask_id, mask_key, redact


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("16505551234", "16*******34"),
        ("US.13491208655302741918", "US.13****************18"),
        ("1234", "****"),
    ],
)
def test_ids_are_masked(raw: str, masked: str) -> None:
    assert mask_id(raw) == masked


def test_conversation_keys_keep_the_business_number() -> None:
    assert mask_key("106540352242922:16505551234") == "106540352242922:16*******34"


def test_redact_masks_ids_and_drops_content() -> None:
    event: dict[str, Any] = {
        "event": "x",
        "wa_id": "16505551234",
        "text": "my secret",
        "status": 200,
    }

    out = redact(None, "info", event)

    assert out == {"event": "x", "wa_id": "16*******34", "text": "<dropped>", "status": 200}
