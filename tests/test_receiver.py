"""The webhook receiver against the real Kafka broker."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from tests.conftest import APP_SECRET, OLD_APP_SECRET, PAYLOADS, VERIFY_TOKEN, Client
from tests.kafkautil import read_all, values
from wawindow.config import Settings
from wawindow.dev import samples
from wawindow.ingest.signature import HEADER, sign
from wawindow.keys import Topics

pytestmark = pytest.mark.kafka


async def post(client: Client, raw: bytes, secret: str | None = APP_SECRET) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[HEADER] = sign(raw, secret)
    response = await client.post("/webhook", data=io.BytesIO(raw), headers=headers)
    text = await response.text()
    return response.status, text


async def stored(settings: Settings, topics: Topics) -> tuple[list[dict[str, Any]], list[Any]]:
    """Everything on this test's webhook-events (decoded) and dead-letter (raw records)."""
    assert settings.kafka_bootstrap
    events = values(await read_all(settings.kafka_bootstrap, topics.webhook_events))
    dead = await read_all(settings.kafka_bootstrap, topics.dead_letter)
    return events, dead


# -- handshake -------------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge(receiver: Client) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }

    response = await receiver.get("/webhook", params=params)

    assert response.status == 200
    assert await response.text() == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
async def test_handshake_refuses_a_wrong_token_or_mode(
    receiver: Client, params: dict[str, str]
) -> None:
    response = await receiver.get("/webhook", params=params)

    assert response.status == 403
    assert "1" not in await response.text()


# -- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "not-the-app-secret"])
async def test_bad_or_missing_signature_is_401_and_nothing_is_stored(
    receiver: Client, settings: Settings, topics: Topics, secret: str | None
) -> None:
    raw = samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message("wamid.1", 100)]))
    )

    status, text = await post(receiver, raw, secret)

    assert status == 401
    assert orjson.loads(text)["error"] == "bad_signature"
    assert await stored(settings, topics) == ([], [])


async def test_either_secret_of_a_rotation_is_accepted(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    old = samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message("wamid.old", 1)]))
    )
    new = samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message("wamid.new", 2)]))
    )

    assert (await post(receiver, old, OLD_APP_SECRET))[0] == 200
    assert (await post(receiver, new, APP_SECRET))[0] == 200

    events, _ = await stored(settings, topics)
    assert sorted(e["data"]["wamid"] for e in events) == ["wamid.new", "wamid.old"]


async def test_unicode_bodies_verify_over_their_raw_bytes(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    """Meta escapes non-ASCII; emoji, accents and CJK in a body must not break the check."""
    message = samples.text_message("wamid.u", 5, "Olá 👍 退订? ça va @home")
    raw = samples.encode(samples.body(samples.messages_change(messages=[message])))
    assert b"\\u" in raw

    status, _ = await post(receiver, raw)

    assert status == 200
    events, _ = await stored(settings, topics)
    assert [e["data"]["wamid"] for e in events] == ["wamid.u"]


# -- splitting into Kafka --------------------------------------------------------------------


async def test_every_sample_body_lands_on_webhook_events_keyed_by_conversation(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    from tests.test_split import EXPECTED

    for name in sorted(EXPECTED):
        status, _ = await post(receiver, (PAYLOADS / name).read_bytes())
        assert status == 200, name

    assert settings.kafka_bootstrap
    records = await read_all(settings.kafka_bootstrap, topics.webhook_events)
    got = sorted((r.key.decode(), orjson.loads(r.value)["kind"]) for r in records)
    want = sorted((key, kind) for events in EXPECTED.values() for kind, key in events)
    assert got == want
    assert await read_all(settings.kafka_bootstrap, topics.dead_letter) == []


async def test_a_large_batch_is_stored_whole(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    """Meta batches up to 1,000 updates in one POST; every one must reach Kafka."""
    raw = samples.encode(samples.status_batch(0, 1000, 1_750_000_000, users=200))

    status, _ = await post(receiver, raw)

    assert status == 200
    events, dead = await stored(settings, topics)
    assert len(events) == 1000
    assert len({e["event_id"] for e in events}) == 1000
    assert dead == []


async def test_events_of_one_user_keep_their_order(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    """Sequential POSTs for one user come out of Kafka in the order they were acknowledged,
    interleaved with other users' traffic."""
    for i in range(30):
        mine = samples.text_message(f"wamid.mine.{i:02d}", 1000 + i, wa_id="16505559999")
        other = samples.text_message(f"wamid.other.{i:02d}", 1000 + i, wa_id=f"1650555{i:04d}")
        raw = samples.encode(samples.body(samples.messages_change(messages=[other, mine])))
        assert (await post(receiver, raw))[0] == 200

    events, _ = await stored(settings, topics)
    mine_in_order = [e["data"]["wamid"] for e in events if e["key"].endswith(":16505559999")]
    assert mine_in_order == [f"wamid.mine.{i:02d}" for i in range(30)]


async def test_a_duplicate_post_keeps_the_same_event_ids(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    """Meta re-sends; the receiver stores both (at-least-once) with identical ids so the
    worker can drop the repeat."""
    raw = samples.encode(
        samples.body(samples.messages_change(statuses=[samples.status("wamid.d", "read", 9)]))
    )

    assert (await post(receiver, raw))[0] == 200
    assert (await post(receiver, raw))[0] == 200

    events, _ = await stored(settings, topics)
    assert len(events) == 2
    assert events[0]["event_id"] == events[1]["event_id"]


# -- bad input -------------------------------------------------------------------------------


async def test_an_oversized_body_is_413_and_nothing_is_stored(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    raw = b'{"object":"whatsapp_business_account","pad":"' + b"x" * settings.max_body_bytes + b'"}'

    status, text = await post(receiver, raw)

    assert status == 413
    assert orjson.loads(text)["error"] == "payload_too_large"
    assert await stored(settings, topics) == ([], [])


async def test_an_oversized_chunked_body_without_length_is_413(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    """Without Content-Length the limit is enforced while reading."""
    chunk = b"x" * 65536

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(settings.max_body_bytes // len(chunk) + 2):
            yield chunk

    response = await receiver.post(
        "/webhook", data=chunks(), headers={HEADER: "sha256=" + "0" * 64}
    )

    assert response.status == 413
    assert await stored(settings, topics) == ([], [])


async def test_a_body_at_the_limit_is_accepted(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    base = samples.body(samples.messages_change(messages=[samples.text_message("wamid.big", 1)]))
    base["pad"] = ""
    room = settings.max_body_bytes - len(samples.encode(base))
    base["pad"] = "x" * room
    raw = samples.encode(base)
    assert len(raw) == settings.max_body_bytes

    assert (await post(receiver, raw))[0] == 200


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b'{"hello": "world"}', "object is None"),
        (b'{"object":"whatsapp_business_account","entry":"nope"}', "no entry list"),
    ],
)
async def test_signed_garbage_goes_whole_to_dead_letter_with_200(
    receiver: Client, settings: Settings, topics: Topics, raw: bytes, reason: str
) -> None:
    status, _ = await post(receiver, raw)

    assert status == 200
    events, dead = await stored(settings, topics)
    assert events == []
    [record] = dead
    assert record.value == raw
    headers = dict(record.headers)
    assert reason in headers["reason"].decode()
    assert headers["source"] == b"webhook"


async def test_a_partly_unreadable_body_stores_the_good_events_and_keeps_the_body(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    statuses = [samples.status("wamid.ok", "sent", 1), {"status": "read", "timestamp": "2"}]
    raw = samples.encode(samples.body(samples.messages_change(statuses=statuses)))

    status, _ = await post(receiver, raw)

    assert status == 200
    events, dead = await stored(settings, topics)
    assert [e["data"]["wamid"] for e in events] == ["wamid.ok"]
    assert [r.value for r in dead] == [raw]
    assert "statuses[1]: no id" in dict(dead[0].headers)["reason"].decode()


# -- Content-Encoding ------------------------------------------------------------------------


def one_message(wamid: str = "wamid.enc") -> bytes:
    return samples.encode(
        samples.body(samples.messages_change(messages=[samples.text_message(wamid, 100)]))
    )


async def post_encoded(client: Client, body: bytes, coding: str, signed: bytes) -> tuple[int, Any]:
    """POST ``body`` as it is, naming ``coding``, signed over ``signed`` (the decoded body)."""
    headers = {"Content-Type": "application/json", "Content-Encoding": coding}
    headers[HEADER] = sign(signed, APP_SECRET)
    response = await client.post("/webhook", data=io.BytesIO(body), headers=headers)
    return response.status, await response.text()


def flipped(data: bytes) -> bytes:
    return data[:12] + bytes([data[12] ^ 0xFF]) + data[13:]


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", lambda raw: raw),  # the case: plain JSON said to be gzip
        ("deflate", lambda raw: raw),
        ("gzip", lambda raw: flipped(gzip.compress(raw))),
        ("gzip", zlib.compress),  # deflate said to be gzip
        ("deflate", gzip.compress),
    ],
    ids=["json-as-gzip", "json-as-deflate", "damaged-gzip", "zlib-as-gzip", "gzip-as-deflate"],
)
async def test_a_body_not_in_its_content_encoding_is_400_and_nothing_is_stored(
    receiver: Client, settings: Settings, topics: Topics, coding: str, encode: Any
) -> None:
    """Its signature cannot be checked, so it is no signed body: not even dead-lettered."""
    raw = one_message()

    status, text = await post_encoded(receiver, encode(raw), coding, raw)
    after, _ = await post(receiver, one_message("wamid.after"))  # the refusal closed its connection

    assert (status, orjson.loads(text)) == (
        400,
        {"error": "unreadable_body", "detail": f"the body is not valid {coding}"},
    )
    assert after == 200
    events, dead = await stored(settings, topics)
    assert [e["data"]["wamid"] for e in events] == ["wamid.after"]
    assert dead == []


@pytest.mark.parametrize("coding", ["x-bogus", "compress", "gzip, gzip", "gzip;q=1", "gzïp"])
async def test_an_unsupported_content_encoding_is_400_and_nothing_is_stored(
    receiver: Client, settings: Settings, topics: Topics, coding: str
) -> None:
    raw = one_message()

    status, text = await post_encoded(receiver, raw, coding, raw)

    assert status == 400
    assert orjson.loads(text)["error"] == "unsupported_encoding"
    assert await stored(settings, topics) == ([], [])


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_a_coding_aiohttp_cannot_decode_here_is_400_and_nothing_is_stored(
    receiver: Client, settings: Settings, topics: Topics, coding: str
) -> None:
    """Without the Brotli or zstd library aiohttp's parser refuses these itself, before any of
    the service's code runs (its answer is plain text); with it, JSON bytes are not valid."""
    raw = one_message()

    status, _ = await post_encoded(receiver, raw, coding, raw)

    assert status == 400
    assert await stored(settings, topics) == ([], [])


@pytest.mark.parametrize(
    ("coding", "encode"),
    [("gzip", gzip.compress), ("GZIP", gzip.compress), ("deflate", zlib.compress),
     ("identity", lambda raw: raw), ("", lambda raw: raw)],
)  # fmt: skip
async def test_a_body_in_a_coding_aiohttp_decodes_is_accepted_signed_as_decoded(
    receiver: Client, settings: Settings, topics: Topics, coding: str, encode: Any
) -> None:
    raw = one_message()

    status, _ = await post_encoded(receiver, encode(raw), coding, raw)

    assert status == 200
    events, dead = await stored(settings, topics)
    assert ([e["data"]["wamid"] for e in events], dead) == (["wamid.enc"], [])


async def test_a_gzip_body_over_the_limit_once_decoded_is_413_and_nothing_is_stored(
    receiver: Client, settings: Settings, topics: Topics
) -> None:
    raw = b'{"object":"whatsapp_business_account","pad":"' + b"x" * settings.max_body_bytes + b'"}'
    body = gzip.compress(raw)
    assert len(body) < settings.max_body_bytes

    status, text = await post_encoded(receiver, body, "gzip", raw)

    assert (status, orjson.loads(text)["error"]) == (413, "payload_too_large")
    assert await stored(settings, topics) == ([], [])


# -- logging and probes ----------------------------------------------------------------------


async def test_one_canonical_log_line_per_post_without_content_or_raw_ids(receiver: Client) -> None:
    message = samples.text_message("wamid.log", 1, "a very private sentence", wa_id="16505559876")
    raw = samples.encode(samples.body(samples.messages_change(messages=[message])))

    with capture_logs() as logs:
        assert (await post(receiver, raw))[0] == 200

    lines = [line for line in logs if line["event"] == "webhook.post"]
    assert len(lines) == 1
    line = lines[0]
    assert (line["outcome"], line["status"], line["events"]) == ("accepted", 200, 1)
    assert line["latency_ms"] >= line["kafka_ms"] >= 0
    assert "private sentence" not in str(logs)
    assert "16505559876" not in str(logs)


async def test_health_and_readiness(receiver: Client) -> None:
    health = await receiver.get("/healthz")
    ready = await receiver.get("/readyz")

    assert health.status == 200
    assert ready.status == 200
    assert (await ready.json())["kafka"] is True
