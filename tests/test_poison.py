"""Bad input gets a clear answer and loses nothing: named cases, then fuzzing.

Against the real receiver (on a real port, producing to the real broker) and the real worker
(on the real Redis): a signed body is answered 200 (its unreadable parts kept on
``dead-letter``) or 413, never another 5xx; a bad signature header is 401; a body not
readable in its Content-Encoding is 400 with nothing stored; the worker never dies, and
afterwards a normal message still opens its window.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import APP_SECRET, Client, Services, examples
from tests.engine_harness import Scenario
from tests.kafkautil import read_all, values
from wawindow.dev import samples
from wawindow.ingest.signature import HEADER, sign
from wawindow.ingest.split import split_body

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


async def post(client: Client, raw: bytes, **headers: str) -> int:
    response = await client.post(
        "/webhook", data=io.BytesIO(raw), headers={HEADER: sign(raw, APP_SECRET), **headers}
    )
    return response.status


async def raw_post(client: Client, head: bytes, body: bytes) -> int:
    """POST with header bytes as given (a client library would refuse to send them)."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + head
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()


def header(record: Any, name: str) -> str:
    """A header of a Kafka record, as text."""
    return bytes(dict(record.headers)[name]).decode()


def body_with(value: dict[str, Any]) -> bytes:
    return samples.encode(samples.body({"field": "messages", "value": value}))


def metadata() -> dict[str, Any]:
    return {"display_phone_number": "15550783881", "phone_number_id": samples.PHONE_NUMBER_ID}


# -- named cases --------------------------------------------------------------------------


async def test_contacts_as_a_number_is_ignored_and_the_message_stored(s: Scenario) -> None:
    """``contacts`` names no one here, so nothing of it is lost: the message is stored,
    nothing is set aside."""
    message = samples.text_message("wamid.1", s.now - 60)
    raw = body_with({"metadata": metadata(), "contacts": 7, "messages": [message]})

    assert await post(s.receiver, raw) == 200
    assert s.settings.kafka_bootstrap
    events = values(await read_all(s.settings.kafka_bootstrap, s.topics.webhook_events))
    assert [(e["kind"], e["data"]["wamid"]) for e in events] == [("message", "wamid.1")]
    assert await s.dead_letters() == []


@pytest.mark.parametrize("timestamp", ["1" * 30, 2**70, -(2**70), 253402300800, "1e400"])
async def test_a_timestamp_out_of_range_is_dead_lettered_and_the_worker_goes_on(
    s: Scenario, timestamp: Any
) -> None:
    bad = {**samples.text_message("wamid.bad", s.now - 60, wa_id="16505550009")}
    bad["timestamp"] = timestamp
    raw = samples.encode(samples.body(samples.messages_change(messages=[bad])))
    assert await post(s.receiver, raw) == 200
    await s.inbound("wamid.good", s.now - 60)
    await s.process()

    dead = await s.dead_letters()
    assert await s.event_types() == ["service_window.opened"]
    assert [header(d, "source") for d in dead] == ["webhook"]
    assert dead[0].value == raw  # the signed body as received
    assert "messages[0]: timestamp: " in header(dead[0], "reason")


async def test_a_bogus_content_encoding_is_400_not_a_server_error(s: Scenario) -> None:
    raw = samples.encode(samples.body(samples.messages_change(
        messages=[samples.text_message("wamid.1", s.now - 60)])))  # fmt: skip
    status = await post(s.receiver, raw, **{"Content-Encoding": "x-bogus"})
    assert status == 400


@pytest.mark.parametrize(
    "header", [b"sha256=\xff\xfe" + b"0" * 62, b"sha256=" + "é".encode() * 32, b"sha256=", b""]
)
async def test_a_malformed_signature_header_is_401(s: Scenario, header: bytes) -> None:
    status = await raw_post(s.receiver, HEADER.encode() + b": " + header + b"\r\n", b"{}")
    assert status == 401


async def test_a_header_that_is_not_http_is_refused_by_the_parser_with_400(s: Scenario) -> None:
    """Control bytes make the request itself malformed: aiohttp answers before the handler."""
    status = await raw_post(s.receiver, HEADER.encode() + b": \x00\x01\r\n", b"{}")
    assert status == 400


async def test_a_signed_unreadable_body_of_almost_3_mb_is_kept_on_dead_letter(
    s: Scenario,
) -> None:
    raw = b'{"object": "whatsapp_business_account", "entry": [' + b"x" * (2_900_000) + b"]}"
    assert await post(s.receiver, raw) == 200
    [kept] = await s.dead_letters()
    assert kept.value == raw  # whole: the topic takes records of up to 8 MiB


async def test_a_body_larger_than_the_topic_takes_is_kept_as_digest_and_excerpt(
    s: Scenario,
) -> None:
    from wawindow.ingest.app import DEAD_LETTER_BODY_BYTES, _records
    from wawindow.ingest.split import split_body

    raw = b"{" + b"x" * (DEAD_LETTER_BODY_BYTES + 10)
    [record] = _records(s.topics, split_body(raw, 0), raw, 0)
    headers = dict(record.headers or ())
    assert record.value is not None
    assert len(record.value) == DEAD_LETTER_BODY_BYTES
    assert headers["truncated_from_bytes"] == str(len(raw)).encode()


async def test_a_status_whose_pricing_category_is_an_object_takes_nothing_with_it(
    s: Scenario,
) -> None:
    bad = samples.status("wamid.o1", "delivered", s.now - 30, pricing={"category": {"x": 1}})
    good = samples.text_message("wamid.in", s.now - 60)
    await s.post(samples.messages_change(messages=[good], statuses=[bad]))
    await s.process()

    assert "service_window.opened" in await s.event_types()


# -- fuzzing ------------------------------------------------------------------------------

LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from(["", "0", "-1", "1e999", "\u0000", "\ud7ff", "🙂" * 5]),
)  # fmt: skip
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


@st.composite
def mangled_bodies(draw: Any) -> bytes:
    """A real 2026 body with some of its values replaced by other JSON (wrong types, extreme
    numbers, odd Unicode, deep nesting), or duplicated."""
    now = 1_790_000_000
    base = samples.body(
        samples.messages_change(
            messages=[samples.text_message("wamid.f", now, referral=samples.ad_referral())],
            statuses=[
                samples.status(
                    "wamid.o",
                    "delivered",
                    now,
                    pricing=samples.pmp_pricing("marketing", "regular"),
                    error_code=131047,
                )
            ],
            contacts=[samples.contact("16505551234", "US.1")],
        ),
        samples.calls_change(calls=[samples.call("wacid.f", "connect", now)]),
    )
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(base)
        path = draw(st.sampled_from(paths[1:]))
        parent = base
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()):
            parent[path[-1]] = draw(JSON)
        elif isinstance(parent, list):
            parent.append(parent[path[-1]])
    # the standard library's encoder: it writes integers past 64 bits, as JSON may carry them
    return json.dumps(base).encode()


@settings(max_examples=examples(15))
@given(st.lists(mangled_bodies(), min_size=1, max_size=12))
def test_fuzzed_bodies_never_get_a_5xx_and_never_stop_the_worker(
    services: Services, bodies: list[bytes]
) -> None:
    asyncio.run(_fuzz(services, bodies))


async def _fuzz(services: Services, bodies: list[bytes]) -> None:
    from tests.conftest import fresh_scenario

    async with fresh_scenario(services) as s:
        for raw in bodies:
            assert await post(s.receiver, raw) in (200, 413), raw[:300]
        await s.inbound("wamid.after", s.now - 60, user="16505559999")
        await s.process()
        events = await s.events()
        assert any(
            e["type"] == "wawindow.service_window.opened"
            and e["data"]["user"]["wa_id"] == "16505559999"
            for e in events
        )
        assert s.settings.kafka_bootstrap
        dead = await read_all(s.settings.kafka_bootstrap, s.topics.dead_letter)
        written = await read_all(s.settings.kafka_bootstrap, s.topics.webhook_events)
        # nothing reaches dead-letter but a body that was posted (the receiver's) or a
        # record the receiver wrote (the worker's), each with the reason it was set aside
        for d in dead:
            assert header(d, "reason")
            origin = {"webhook": bodies, "worker": [r.value for r in written]}
            assert d.value in origin[header(d, "source")], d.value[:300]


CODINGS = ["gzip", "GZIP", "deflate", "identity", "", "br", "zstd", "x-bogus", "gzip, gzip"]
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda raw: raw,
    "gzip": gzip.compress,
    "zlib": zlib.compress,
    "raw deflate": lambda raw: zlib.compress(raw)[2:-4],
}


@dataclass(frozen=True)
class Encoded:
    """A POST naming ``coding`` whose body is a message encoded by ``encoder``, then damaged
    (a byte changed, or cut short at ``at``), or else ``junk``."""

    coding: str
    encoder: str | None
    damage: str
    at: int
    xor: int
    junk: bytes

    def body(self, raw: bytes) -> bytes:
        if self.encoder is None:
            return self.junk
        data = ENCODERS[self.encoder](raw)
        at = self.at % len(data)
        if self.damage == "byte":
            return data[:at] + bytes([data[at] ^ self.xor]) + data[at + 1 :]
        return data[:at] if self.damage == "cut" else data


ENCODED = st.builds(
    Encoded,
    coding=st.sampled_from(CODINGS),
    encoder=st.sampled_from([None, *ENCODERS]),
    damage=st.sampled_from(["none", "byte", "cut"]),
    at=st.integers(0, 10_000),
    xor=st.integers(1, 255),
    junk=st.binary(max_size=200),
)


@settings(max_examples=examples(10))
@given(st.lists(ENCODED, min_size=1, max_size=8))
def test_fuzzed_content_encodings_are_never_a_5xx_and_only_a_200_is_stored(
    services: Services, posts: list[Encoded]
) -> None:
    asyncio.run(_fuzz_encodings(services, posts))


async def _fuzz_encodings(services: Services, posts: list[Encoded]) -> None:
    """Each POST is signed as the message it stands for (the wamid its index): only a body
    that decodes to exactly that is answered 200 and stored; anything else 400, 401 or 413,
    and nothing of it on any topic."""
    from aiohttp.test_utils import TestClient, TestServer

    from tests.apps import create_app
    from tests.conftest import new_prefix, settings_for
    from wawindow.kafka.topics import create_topics
    from wawindow.keys import Topics

    settings = settings_for(services, new_prefix())
    topics = Topics(settings.topic_prefix)
    await create_topics(services.kafka_bootstrap, topics, partitions=1, replication_factor=1)
    accepted = set()
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        for i, sent in enumerate(posts):
            raw = samples.encode(samples.body(samples.messages_change(
                messages=[samples.text_message(f"wamid.z{i}", 1_790_000_000)])))  # fmt: skip
            response = await client.post(
                "/webhook",
                data=io.BytesIO(sent.body(raw)),
                headers={HEADER: sign(raw, APP_SECRET), "Content-Encoding": sent.coding},
            )
            assert response.status in (200, 400, 401, 413), (response.status, sent)
            if response.status == 200:
                accepted.add(f"wamid.z{i}")
    finally:
        await client.close()
    events = values(await read_all(services.kafka_bootstrap, topics.webhook_events))
    assert {e["data"]["wamid"] for e in events} == accepted
    assert await read_all(services.kafka_bootstrap, topics.dead_letter) == []


@st.composite
def mangled_events(draw: Any) -> list[bytes]:
    """Events as the receiver writes them, then mangled: what a buggy or older producer could
    leave on ``webhook-events``."""
    raw = samples.encode(samples.body(samples.messages_change(
        messages=[samples.text_message("wamid.e", 1_790_000_000, referral=samples.ad_referral())],
        statuses=[samples.status("wamid.o", "read", 1_790_000_000, error_code=131047,
                                 conversation={"id": "c", "expiration_timestamp": "1790000100",
                                               "origin": {"type": "referral_conversion"}})],
    )))  # fmt: skip
    out = []
    for event in split_body(raw, 0).events:
        doc = orjson.loads(event.encode())
        for _ in range(draw(st.integers(0, 3))):
            path = draw(st.sampled_from(_paths(doc)[1:]))
            parent = doc
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = draw(JSON)
        out.append(json.dumps(doc).encode())
    return out


@settings(max_examples=examples(10))
@given(st.lists(mangled_events(), min_size=1, max_size=6))
def test_mangled_events_on_the_topic_never_stop_the_worker(
    services: Services, batches: list[list[bytes]]
) -> None:
    asyncio.run(_mangled(services, [e for b in batches for e in b]))


async def _mangled(services: Services, events: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    from tests.conftest import fresh_scenario

    async with fresh_scenario(services) as s:
        producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap)
        await producer.start()
        try:
            for value in events:
                await producer.send_and_wait(s.topics.webhook_events, value, key=b"k")
        finally:
            await producer.stop()
        await s.inbound("wamid.after", s.now - 60, user="16505559999")
        await s.process()
        assert any(e["data"]["user"]["wa_id"] == "16505559999" for e in await s.events())
        # every record the worker set aside is one of the mangled ones, with its reason
        for d in await s.dead_letters():
            assert (header(d, "source"), d.value in events) == ("worker", True)
            assert header(d, "reason").startswith(("unreadable event", "worker could not"))


async def test_topics_create_gives_an_older_dead_letter_topic_the_record_size_it_needs(
    services: Services,
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from tests.conftest import new_prefix
    from tests.waiting import until
    from wawindow.kafka.topics import MAX_RECORD_BYTES, create_topics
    from wawindow.keys import Topics

    topics = Topics(new_prefix())
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
    await admin.start()
    try:  # as an earlier release made it: Kafka's default record size
        await admin.create_topics([NewTopic(topics.dead_letter, 1, 1)])
        await create_topics(services.kafka_bootstrap, topics, partitions=1, replication_factor=1)

        async def record_size_raised() -> bool:
            # the broker serves a topic's configuration from its copy of the metadata log,
            # which takes the change a moment after it was acknowledged
            [described] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topics.dead_letter)]
            )
            configs = {c[0]: c[1] for c in described.resources[0][4]}
            return bool(configs["max.message.bytes"] == str(MAX_RECORD_BYTES))

        await until(record_size_raised, "dead-letter's max.message.bytes raised", 30)
    finally:
        await admin.close()
