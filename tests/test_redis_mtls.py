"""Mutual TLS to Redis: a real redis-server that requires a client certificate
(``tls-auth-clients yes``), reached with ``WAWINDOW_REDIS_SSL_CERT_FILE`` and
``WAWINDOW_REDIS_SSL_KEY_FILE``, and refusing the same client without them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wawindow.config import Settings
from wawindow.devservices.redis_server import RedisServer
from wawindow.devservices.tls import LocalCA
from wawindow.errors import RedisUnavailable
from wawindow.redis.connection import connect

pytestmark = [pytest.mark.redis]


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCA, RedisServer]]:
    root = tmp_path_factory.mktemp("mtls")
    ca = LocalCA.create(root / "tls")
    server = RedisServer(root / "redis", tls=ca, client_certificates=True)
    server.start()
    try:
        yield ca, server
    finally:
        server.stop()


def settings(server: RedisServer, **extra: str) -> Settings:
    return Settings.from_env(
        {"WAWINDOW_REDIS_URL": f"rediss://127.0.0.1:{server.tls_port}/0", **extra}
    )


async def test_a_client_certificate_from_the_settings_is_presented(
    mutual: tuple[LocalCA, RedisServer],
) -> None:
    ca, server = mutual
    s = settings(
        server,
        WAWINDOW_REDIS_SSL_CA_FILE=str(ca.ca),
        WAWINDOW_REDIS_SSL_CERT_FILE=str(ca.client_cert),
        WAWINDOW_REDIS_SSL_KEY_FILE=str(ca.client_key),
    )
    assert s.redis_url is not None
    client = await connect(s.redis_url.value, s.redis_tls)
    try:
        assert await client.set("ww:mtls", "1")
        assert await client.get("ww:mtls") == b"1"
    finally:
        await client.aclose()


async def test_without_a_client_certificate_the_server_refuses_in_one_line(
    mutual: tuple[LocalCA, RedisServer],
) -> None:
    ca, server = mutual
    s = settings(server, WAWINDOW_REDIS_SSL_CA_FILE=str(ca.ca))
    assert s.redis_url is not None
    with pytest.raises(RedisUnavailable) as info:
        await connect(s.redis_url.value, s.redis_tls)
    assert f"cannot reach Redis at 127.0.0.1:{server.tls_port}" in str(info.value)
    assert "\n" not in str(info.value)
