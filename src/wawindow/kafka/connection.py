"""How every Kafka client of the project connects: one function of the settings.

The producer, the worker's consumer, the admin clients (topics, group coordinator), the CLI
and the tests all take a :class:`KafkaConnection`; its :meth:`~KafkaConnection.options` are
the keyword arguments of aiokafka's clients. Supported: ``PLAINTEXT``, ``SSL`` (with a CA
bundle, and a client certificate and key for mutual TLS), ``SASL_PLAINTEXT`` and
``SASL_SSL`` with ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` or ``OAUTHBEARER`` (a token
provider named as ``module:attribute``; ``wawindow.kafka.msk:MSKTokenProvider`` for Amazon
MSK IAM). Hostname verification is on whenever TLS is.
"""

from __future__ import annotations

import importlib
import ssl
from dataclasses import dataclass
from typing import Any

from wawindow.errors import ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
COMPRESSIONS = ("none", "gzip", "lz4", "zstd")


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where Kafka is and how to reach it (secrets stay out of ``repr``)."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token_provider: str | None = None  # "module:attribute", for OAUTHBEARER
    compression: str = "none"

    def __repr__(self) -> str:
        return (
            f"KafkaConnection({self.bootstrap!r}, {self.security_protocol}"
            f"{', ' + self.sasl_mechanism if self.sasl_mechanism else ''})"
        )

    @classmethod
    def of(cls, where: str | KafkaConnection) -> KafkaConnection:
        return where if isinstance(where, KafkaConnection) else cls(where)

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def check(self) -> None:
        """Refuse a combination that cannot work, with one line naming the settings."""
        v = "WAWINDOW_KAFKA_"
        if self.security_protocol not in PROTOCOLS:
            raise ConfigError(f"{v}SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism not in MECHANISMS:
            raise ConfigError(
                f"{v}SECURITY_PROTOCOL={self.security_protocol} needs {v}SASL_MECHANISM:"
                f" one of {', '.join(MECHANISMS)}"
            )
        if not sasl and self.sasl_mechanism:
            raise ConfigError(
                f"{v}SASL_MECHANISM is set but {v}SECURITY_PROTOCOL={self.security_protocol}"
                " uses no SASL; use SASL_SSL (or SASL_PLAINTEXT)"
            )
        if sasl and self.sasl_mechanism != "OAUTHBEARER" and not (self.username and self.password):
            raise ConfigError(
                f"{v}SASL_MECHANISM={self.sasl_mechanism} needs {v}SASL_USERNAME and"
                f" {v}SASL_PASSWORD (or {v}SASL_PASSWORD_FILE)"
            )
        if self.sasl_mechanism == "OAUTHBEARER" and not self.token_provider:
            raise ConfigError(
                f"{v}SASL_MECHANISM=OAUTHBEARER needs {v}OAUTH_TOKEN_PROVIDER (module:attribute)"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(f"{v}SSL_CERT_FILE and {v}SSL_KEY_FILE go together (mutual TLS)")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ConfigError(
                f"{v}SSL_* files are set but {v}SECURITY_PROTOCOL={self.security_protocol}"
                " uses no TLS; use SSL or SASL_SSL"
            )
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"{v}COMPRESSION must be one of {', '.join(COMPRESSIONS)}")

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and
        ``AIOKafkaAdminClient`` for this connection."""
        out: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism:
            out["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism == "OAUTHBEARER":
                out["sasl_oauth_token_provider"] = _token_provider(self.token_provider or "")
            else:
                out["sasl_plain_username"] = self.username
                out["sasl_plain_password"] = self.password
        return out

    def ssl_context(self) -> ssl.SSLContext:
        """System CAs (or the CA bundle), hostname verification on, TLS 1.2 at least."""
        context = tls_context("WAWINDOW_KAFKA_SSL_", self.ca_file, self.cert_file, self.key_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    @property
    def producer_compression(self) -> str | None:
        return None if self.compression == "none" else self.compression


def tls_context(
    prefix: str, ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext:
    """A client's TLS context from the files of the settings ``prefix`` + ``CA_FILE``,
    ``CERT_FILE``, ``KEY_FILE``; one that cannot be read or used is one line naming it."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{prefix}CA_FILE: cannot use {ca_file}: {_why(exc)}") from None
    if cert_file and key_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{prefix}CERT_FILE and {prefix}KEY_FILE: cannot use {cert_file} with"
                f" {key_file}: {_why(exc)}"
            ) from None
    return context


def _why(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return exc.strerror or str(exc)


def _token_provider(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    try:
        provider = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"WAWINDOW_KAFKA_OAUTH_TOKEN_PROVIDER={spec}: cannot load it ({exc})"
        ) from None
    return provider() if isinstance(provider, type) else provider


def describe(exc: BaseException) -> str:
    """One clear line for a connection failure, whatever aiokafka wrapped it in."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the broker's TLS certificate is not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if "Authentication failed" in text or "SaslAuthentication" in type(exc).__name__:
        return f"SASL authentication failed: {text}"
    return text


async def diagnose(kafka: KafkaConnection, timeout_s: float = 5.0) -> str:
    """Why the first bootstrap server refuses this connection, in one line: aiokafka's own
    start-up error says only that it could not bootstrap."""
    import asyncio

    from aiokafka.conn import create_conn

    host, _, port = kafka.bootstrap.split(",")[0].strip().rpartition(":")
    options = kafka.options()
    try:
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(
                host,
                int(port),
                ssl_context=options.get("ssl_context"),
                security_protocol=kafka.security_protocol,
                sasl_mechanism=kafka.sasl_mechanism,
                sasl_plain_username=kafka.username,
                sasl_plain_password=kafka.password,
                sasl_oauth_token_provider=options.get("sasl_oauth_token_provider"),
            )
        conn.close()
    except TimeoutError:
        return f"{kafka.bootstrap} did not answer within {timeout_s:.0f} s"
    except Exception as exc:  # noqa: BLE001 - whatever it is, it is the reason to report
        return describe(exc)
    return "it answered a single connection, but not the client's metadata requests"
