"""X-Hub-Signature-256 checks: pure, no I/O."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from wawindow.ingest.signature import sign, verify

BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def test_a_signature_made_with_the_secret_verifies() -> None:
    assert verify(BODY, sign(BODY, "s3cret"), ["s3cret"])


def test_the_signature_is_metas_hmac_sha256_hex() -> None:
    """Independent of our sign(): Meta's documented construction."""
    header = "sha256=" + hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()

    assert verify(BODY, header, ["s3cret"])


def test_any_configured_secret_may_sign() -> None:
    """During a rotation both the old and the new app secret are accepted."""
    assert verify(BODY, sign(BODY, "old"), ["new", "old"])
    assert verify(BODY, sign(BODY, "new"), ["new", "old"])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "sha256=" + "0" * 64,
        "sha256=nothex",
        sign(BODY, "other-secret"),
        sign(BODY + b" ", "s3cret"),
    ],
)
def test_wrong_or_missing_signatures_fail(header: str | None) -> None:
    assert not verify(BODY, header, ["s3cret"])


def test_no_secrets_means_nothing_verifies() -> None:
    assert not verify(BODY, sign(BODY, "s3cret"), [])


def test_upper_case_hex_is_accepted() -> None:
    header = sign(BODY, "s3cret")

    assert verify(BODY, "sha256=" + header[7:].upper(), ["s3cret"])


def test_unicode_is_verified_over_the_raw_escaped_bytes() -> None:
    """Meta sends non-ASCII escaped (\\u00e4); the hash is over those bytes, and re-encoding
    the decoded text (as some libraries do) must not be what we verify."""
    raw = b'{"text":"\\u00e4\\u00f6\\u00e5 @ \\ud83d\\udc4d"}'
    decoded_and_reencoded = '{"text":"äöå @ 👍"}'.encode()

    assert verify(raw, sign(raw, "s3cret"), ["s3cret"])
    assert not verify(decoded_and_reencoded, sign(raw, "s3cret"), ["s3cret"])
