"""Settings from the environment: pure, with an injected environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from wawindow.config import DEFAULT_OPT_OUT_KEYWORDS, Secret, Settings
from wawindow.errors import ConfigError


def test_defaults_match_the_interface() -> None:
    settings = Settings.from_env({})

    assert settings.topic_prefix == "wawindow."
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 8080)
    assert settings.counts_retention_days == 400
    assert settings.max_body_bytes == 3 * 1024 * 1024
    assert settings.keep_content is False
    assert settings.opt_out_keywords == DEFAULT_OPT_OUT_KEYWORDS


def test_secrets_are_read_and_never_shown() -> None:
    settings = Settings.from_env(
        {
            "WAWINDOW_APP_SECRETS": "new-secret, old-secret",
            "WAWINDOW_VERIFY_TOKEN": "verify-me-42",
            "WAWINDOW_REDIS_URL": "redis://:pw@host:6379/0",
        }
    )

    assert [s.value for s in settings.app_secrets] == ["new-secret", "old-secret"]
    text = repr(settings) + str(settings.public())
    for secret in ("new-secret", "old-secret", "verify-me-42", "pw@host"):
        assert secret not in text


def test_secrets_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "secrets").write_text("from-file-1,from-file-2\n")

    settings = Settings.from_env({"WAWINDOW_APP_SECRETS_FILE": str(tmp_path / "secrets")})

    assert [s.value for s in settings.app_secrets] == ["from-file-1", "from-file-2"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WAWINDOW_HTTP_PORT": "eighty"}, "WAWINDOW_HTTP_PORT"),
        ({"WAWINDOW_HTTP_PORT": "70000"}, "WAWINDOW_HTTP_PORT"),
        ({"WAWINDOW_COUNTS_RETENTION_DAYS": "0"}, "WAWINDOW_COUNTS_RETENTION_DAYS"),
        ({"WAWINDOW_KEEP_CONTENT": "maybe"}, "WAWINDOW_KEEP_CONTENT"),
        ({"WAWINDOW_LOG_LEVEL": "loud"}, "WAWINDOW_LOG_LEVEL"),
        ({"WAWINDOW_REDIS_DURABILITY": "replicas:0"}, "WAWINDOW_REDIS_DURABILITY"),
        ({"WAWINDOW_REDIS_DURABILITY": "fsync"}, "WAWINDOW_REDIS_DURABILITY"),
        ({"WAWINDOW_API_TOKENS": "tok="}, "WAWINDOW_API_TOKENS"),
        ({"WAWINDOW_APP_SECRETS_FILE": "/nonexistent/secret"}, "WAWINDOW_APP_SECRETS_FILE"),
        (
            {"WAWINDOW_VERIFY_TOKEN": "a", "WAWINDOW_VERIFY_TOKEN_FILE": "/x"},
            "WAWINDOW_VERIFY_TOKEN",
        ),
    ],
)
def test_malformed_settings_fail_with_one_line_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)

    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_require_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError, match="WAWINDOW_APP_SECRETS is required"):
        Settings.from_env({}).require("app_secrets")


def test_api_tokens_may_be_limited_to_wabas() -> None:
    settings = Settings.from_env({"WAWINDOW_API_TOKENS": "all-seeing,limited=111|222"})

    unlimited, limited = settings.api_tokens
    assert unlimited.waba_ids is None
    assert limited.waba_ids == frozenset({"111", "222"})
    assert limited.token.value == "limited"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})

    with pytest.raises(AttributeError):
        settings.http_port = 1  # type: ignore[misc]


def test_secret_repr_is_masked() -> None:
    assert "hunter2" not in repr(Secret("hunter2")) + str(Secret("hunter2"))


def test_a_token_in_both_token_lists_keeps_one_scope_or_start_up_stops() -> None:
    same = Settings.from_env({"WAWINDOW_API_TOKENS": "t=W1", "WAWINDOW_API_WRITE_TOKENS": "t=W1"})
    assert [(t.waba_ids, t.write) for t in same.api_tokens] == [(frozenset({"W1"}), True)]
    with pytest.raises(ConfigError, match="two different WABA scopes"):
        Settings.from_env({"WAWINDOW_API_TOKENS": "t=W1", "WAWINDOW_API_WRITE_TOKENS": "t"})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WAWINDOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "WAWINDOW_KAFKA_SASL_MECHANISM"),
        ({"WAWINDOW_KAFKA_SASL_MECHANISM": "PLAIN"}, "WAWINDOW_KAFKA_SECURITY_PROTOCOL"),
        ({"WAWINDOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "WAWINDOW_KAFKA_SASL_MECHANISM":
          "SCRAM-SHA-512", "WAWINDOW_KAFKA_SASL_USERNAME": "u"}, "WAWINDOW_KAFKA_SASL_PASSWORD"),
        ({"WAWINDOW_KAFKA_SSL_CA_FILE": "/ca.pem"}, "WAWINDOW_KAFKA_SECURITY_PROTOCOL"),
        ({"WAWINDOW_KAFKA_SECURITY_PROTOCOL": "SSL", "WAWINDOW_KAFKA_SSL_CERT_FILE": "/c.pem"},
         "WAWINDOW_KAFKA_SSL_KEY_FILE"),
        ({"WAWINDOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "WAWINDOW_KAFKA_SASL_MECHANISM":
          "OAUTHBEARER"}, "WAWINDOW_KAFKA_OAUTH_TOKEN_PROVIDER"),
        ({"WAWINDOW_KAFKA_SECURITY_PROTOCOL": "TLS"}, "WAWINDOW_KAFKA_SECURITY_PROTOCOL"),
        ({"WAWINDOW_KAFKA_COMPRESSION": "snappy"}, "WAWINDOW_KAFKA_COMPRESSION"),
        ({"WAWINDOW_REDIS_SENTINELS": "h:1"}, "WAWINDOW_REDIS_SENTINEL_MASTER"),
        ({"WAWINDOW_REDIS_SENTINELS": "h", "WAWINDOW_REDIS_SENTINEL_MASTER": "m"},
         "WAWINDOW_REDIS_SENTINELS"),
        ({"WAWINDOW_REDIS_SSL_CERT_FILE": "/c.pem"}, "WAWINDOW_REDIS_SSL_KEY_FILE"),
        ({"WAWINDOW_REDIS_URL": "rediss://u:p@sentinel/0", "WAWINDOW_REDIS_SENTINELS": "h:1",
          "WAWINDOW_REDIS_SENTINEL_MASTER": "m"}, "WAWINDOW_REDIS_SENTINELS"),
    ],
)  # fmt: skip
def test_a_wrong_connection_combination_is_one_line_naming_the_settings(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert named in str(info.value)
    assert "\n" not in str(info.value)


def test_the_msk_token_provider_without_its_extra_says_how_to_install_it() -> None:
    from wawindow.kafka.connection import KafkaConnection

    conn = KafkaConnection(
        "b:9098", "SASL_SSL", "OAUTHBEARER", token_provider="wawindow.kafka.msk:MSKTokenProvider"
    )
    with pytest.raises(ConfigError, match=r"pip install 'wawindow\[msk\]'"):
        conn.options()


def test_a_secured_connection_verifies_the_hostname_and_loads_the_sasl_secret() -> None:
    settings = Settings.from_env(
        {"WAWINDOW_KAFKA_BOOTSTRAP": "b:9096", "WAWINDOW_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
         "WAWINDOW_KAFKA_SASL_MECHANISM": "scram-sha-512", "WAWINDOW_KAFKA_SASL_USERNAME": "u",
         "WAWINDOW_KAFKA_SASL_PASSWORD": "s3cr3t-pw", "WAWINDOW_KAFKA_COMPRESSION": "zstd"}
    )  # fmt: skip
    options = settings.kafka.options()
    assert options["ssl_context"].check_hostname is True
    assert (options["sasl_mechanism"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "s3cr3t-pw",
    )
    assert settings.kafka.producer_compression == "zstd"
    assert "s3cr3t-pw" not in repr(settings.kafka) + repr(settings)
