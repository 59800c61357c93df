"""Settings, read once from the environment into a frozen object.

Every ``WAWINDOW_*`` variable is read here and nowhere else. Secrets may come from files
(``WAWINDOW_APP_SECRETS_FILE`` and so on, as Kubernetes mounts them) and are wrapped in
:class:`Secret` so that no repr or log line shows them. A missing or malformed value raises
:class:`~wawindow.errors.ConfigError` whose message is one line naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from wawindow.contracts import DAY, DEFAULT_CONSENT_CATEGORIES
from wawindow.errors import ConfigError
from wawindow.kafka.connection import COMPRESSIONS, KafkaConnection
from wawindow.redis.connection import RedisTLS, Sentinels

PREFIX = "WAWINDOW_"

DEFAULT_OPT_OUT_KEYWORDS = (
    "STOP",
    "STOP ALL",
    "UNSUBSCRIBE",
    "OPT OUT",
    "OPTOUT",
    "CANCEL",
    "END",
    "QUIT",
    "退订",
    "取消订阅",
)


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself in a repr, a str() or a log line."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token for ``/v1``; ``waba_ids`` of ``None`` sees every WABA."""

    token: Secret
    waba_ids: frozenset[str] | None
    write: bool = False  # may record consent and erase (WAWINDOW_API_WRITE_TOKENS)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads from its environment, validated."""

    kafka_bootstrap: str | None = None
    redis_url: Secret | None = None
    app_secrets: tuple[Secret, ...] = ()
    verify_token: Secret | None = None
    api_tokens: tuple[ApiToken, ...] = ()
    topic_prefix: str = "wawindow."
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    counts_retention_days: int = 400
    # Meta sends bodies of up to 3 MB; anything larger is answered 413.
    max_body_bytes: int = 3 * 1024 * 1024
    # How long a POST may wait for Kafka's acknowledgement before it is answered 503.
    kafka_ack_timeout_ms: int = 5_000
    topic_partitions: int = 12
    # None: min(3, brokers in the cluster) when topics are created.
    topic_replication_factor: int | None = None
    keep_content: bool = False
    opt_out_keywords: tuple[str, ...] = DEFAULT_OPT_OUT_KEYWORDS
    log_level: str = "info"
    log_format: str = "auto"
    worker_group: str = "wawindow-worker"
    worker_batch_size: int = 500
    # what a worker keeps of the conversations it wrote, decoded (engine/reads.py)
    worker_cache_mb: int = 256
    # the garbage collector's young-generation threshold of a worker process (Python's: 700)
    gc_young_threshold: int = 10_000
    # apply events through the rules' fast path (rules/fast.py), held equal to the model
    rules_fast_path: bool = True
    # closing_soon warnings this many seconds before a service window closes
    closing_soon_offsets: tuple[int, ...] = (3600,)
    free_entry_point_hours: int = 72
    pricing_rules_file: str | None = None
    rate_card_file: str | None = None
    # how durable a batch's Redis writes must be before its Kafka offsets are committed:
    # auto, none, aof, or replicas:<n> (see docs/operations.md, "Durability")
    redis_durability: str = "auto"
    redis_durability_timeout_ms: int = 2_000
    # how send-check uses consent on file: off, record, enforce (see docs/api.md, "Consent")
    consent_policy: str = "off"
    consent_categories: tuple[str, ...] = DEFAULT_CONSENT_CATEGORIES
    # the secret of the keyed hashes an erasure leaves (suppression list, erasure marks)
    suppression_key: Secret | None = None
    # how long a suppression keeps a webhook-borne opt-out after the erasure (an opt-out
    # recorded through the API is kept without expiry, as it was before the erasure)
    suppression_days: int = 400
    # how to reach a secured Kafka (see wawindow.kafka.connection and docs/connecting.md)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    kafka_ssl_ca_file: str | None = None
    kafka_ssl_cert_file: str | None = None
    kafka_ssl_key_file: str | None = None
    kafka_oauth_token_provider: str | None = None
    kafka_compression: str = "none"
    redis_ssl_ca_file: str | None = None
    redis_ssl_cert_file: str | None = None
    redis_ssl_key_file: str | None = None
    redis_sentinels: Sentinels | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read and validate every ``WAWINDOW_*`` variable of ``env`` (default: os.environ)."""
        reader = _Reader(os.environ if env is None else env)
        redis_url = reader.text("REDIS_URL")
        writers = tuple(_api_token(t, write=True) for t in reader.csv("API_WRITE_TOKENS"))
        scopes = {w.token: w.waba_ids for w in writers}
        readers: list[ApiToken] = []
        for t in (_api_token(t) for t in reader.csv("API_TOKENS")):
            if t.token not in scopes:
                readers.append(t)
            elif scopes[t.token] != t.waba_ids:  # never widen (or narrow) a token silently
                raise ConfigError(
                    f"{PREFIX}API_TOKENS and {PREFIX}API_WRITE_TOKENS name a token with two"
                    " different WABA scopes; give it one"
                )
        settings = cls(
            kafka_bootstrap=reader.text("KAFKA_BOOTSTRAP"),
            redis_url=Secret(redis_url) if redis_url else None,
            app_secrets=tuple(Secret(s) for s in reader.csv("APP_SECRETS")),
            verify_token=_secret(reader.text("VERIFY_TOKEN")),
            api_tokens=(*readers, *writers),
            topic_prefix=reader.text("TOPIC_PREFIX", "wawindow.") or "",
            http_host=reader.text("HTTP_HOST", "0.0.0.0") or "0.0.0.0",
            http_port=reader.integer("HTTP_PORT", 8080, low=0, high=65535),
            counts_retention_days=reader.integer("COUNTS_RETENTION_DAYS", 400, low=1),
            max_body_bytes=reader.integer("MAX_BODY_BYTES", 3 * 1024 * 1024, low=1024),
            kafka_ack_timeout_ms=reader.integer("KAFKA_ACK_TIMEOUT_MS", 5_000, low=100),
            topic_partitions=reader.integer("TOPIC_PARTITIONS", 12, low=1),
            topic_replication_factor=reader.optional_integer("TOPIC_REPLICATION_FACTOR", low=1),
            keep_content=reader.boolean("KEEP_CONTENT", default=False),
            opt_out_keywords=tuple(k.upper() for k in reader.csv("OPT_OUT_KEYWORDS"))
            or DEFAULT_OPT_OUT_KEYWORDS,
            log_level=reader.choice(
                "LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")
            ),
            log_format=reader.choice("LOG_FORMAT", "auto", ("auto", "json", "console")),
            worker_group=reader.text("WORKER_GROUP", "wawindow-worker") or "wawindow-worker",
            worker_batch_size=reader.integer("WORKER_BATCH_SIZE", 500, low=1, high=10_000),
            worker_cache_mb=reader.integer("WORKER_CACHE_MB", 256, low=0, high=1_000_000),
            gc_young_threshold=reader.integer(
                "GC_YOUNG_THRESHOLD", 10_000, low=100, high=10_000_000
            ),
            rules_fast_path=reader.boolean("RULES_FAST_PATH", default=True),
            closing_soon_offsets=reader.seconds_list("CLOSING_SOON_OFFSETS", (3600,)),
            free_entry_point_hours=reader.integer(
                "FREE_ENTRY_POINT_HOURS", 72, low=1, high=24 * 30
            ),
            pricing_rules_file=reader.text("PRICING_RULES_FILE"),
            rate_card_file=reader.text("RATE_CARD_FILE"),
            redis_durability=_durability(reader.text("REDIS_DURABILITY", "auto") or "auto"),
            redis_durability_timeout_ms=reader.integer(
                "REDIS_DURABILITY_TIMEOUT_MS", 2_000, low=10, high=60_000
            ),
            consent_policy=reader.choice("CONSENT_POLICY", "off", ("off", "record", "enforce")),
            consent_categories=_categories(reader.csv("CONSENT_CATEGORIES")),
            suppression_key=_secret(reader.text("SUPPRESSION_KEY")),
            suppression_days=reader.integer("SUPPRESSION_DAYS", 400, low=1),
            kafka_security_protocol=(reader.text("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            kafka_sasl_mechanism=(reader.text("KAFKA_SASL_MECHANISM") or "").upper() or None,
            kafka_sasl_username=reader.text("KAFKA_SASL_USERNAME") or None,
            kafka_sasl_password=_secret(reader.text("KAFKA_SASL_PASSWORD")),
            kafka_ssl_ca_file=reader.text("KAFKA_SSL_CA_FILE") or None,
            kafka_ssl_cert_file=reader.text("KAFKA_SSL_CERT_FILE") or None,
            kafka_ssl_key_file=reader.text("KAFKA_SSL_KEY_FILE") or None,
            kafka_oauth_token_provider=reader.text("KAFKA_OAUTH_TOKEN_PROVIDER") or None,
            kafka_compression=reader.choice("KAFKA_COMPRESSION", "none", COMPRESSIONS),
            redis_ssl_ca_file=reader.text("REDIS_SSL_CA_FILE") or None,
            redis_ssl_cert_file=reader.text("REDIS_SSL_CERT_FILE") or None,
            redis_ssl_key_file=reader.text("REDIS_SSL_KEY_FILE") or None,
            redis_sentinels=_sentinels(
                reader.csv("REDIS_SENTINELS"), reader.text("REDIS_SENTINEL_MASTER")
            ),
        )
        if (settings.redis_ssl_cert_file is None) != (settings.redis_ssl_key_file is None):
            raise ConfigError(
                f"{PREFIX}REDIS_SSL_CERT_FILE and {PREFIX}REDIS_SSL_KEY_FILE go together"
            )
        if settings.redis_sentinels and redis_url and redis_url.startswith("rediss://"):
            raise ConfigError(
                f"{PREFIX}REDIS_SENTINELS with a rediss:// URL: Sentinel over TLS is not"
                " supported; reach the Sentinels and the master without TLS (redis://)"
            )
        settings.kafka_connection_unchecked().check()
        return settings

    @property
    def kafka(self) -> KafkaConnection:
        """How to reach Kafka (requires ``WAWINDOW_KAFKA_BOOTSTRAP``)."""
        self.require("kafka_bootstrap")
        return self.kafka_connection_unchecked()

    @property
    def redis_tls(self) -> RedisTLS:
        return RedisTLS(self.redis_ssl_ca_file, self.redis_ssl_cert_file, self.redis_ssl_key_file)

    def kafka_connection_unchecked(self) -> KafkaConnection:
        return KafkaConnection(
            self.kafka_bootstrap or "",
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_sasl_username,
            self.kafka_sasl_password.value if self.kafka_sasl_password else None,
            self.kafka_ssl_ca_file,
            self.kafka_ssl_cert_file,
            self.kafka_ssl_key_file,
            self.kafka_oauth_token_provider,
            self.kafka_compression,
        )

    def require(self, *names: str) -> None:
        """Refuse to go on without the named settings (field names, e.g. ``"app_secrets"``)."""
        for name in names:
            if not getattr(self, name):
                raise ConfigError(f"{PREFIX}{name.upper()} is required for this command")

    def public(self) -> dict[str, Any]:
        """The effective settings with every secret masked, for the start-up log line."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = str(value)
            elif isinstance(value, tuple) and value and isinstance(value[0], Secret | ApiToken):
                value = f"<{len(value)} secret(s)>"
            out[f.name] = value
        return out


def _durability(value: str) -> str:
    if value in ("auto", "none", "aof") or re.fullmatch(r"replicas:[1-9][0-9]?", value):
        return value
    raise ConfigError(
        f"{PREFIX}REDIS_DURABILITY must be auto, none, aof or replicas:<n>, not {value!r}"
    )


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def _api_token(spec: str, *, write: bool = False) -> ApiToken:
    var = PREFIX + ("API_WRITE_TOKENS" if write else "API_TOKENS")
    token, sep, wabas = spec.partition("=")
    if not token:
        raise ConfigError(f"{var} has an entry with an empty token")
    ids = frozenset(w.strip() for w in wabas.split("|") if w.strip()) if sep else None
    if sep and not ids:
        raise ConfigError(f"{var}: a token limited with '=' must name WABA ids")
    return ApiToken(Secret(token), ids, write)


def _sentinels(addresses: list[str], master: str | None) -> Sentinels | None:
    if not addresses:
        if master:
            raise ConfigError(f"{PREFIX}REDIS_SENTINEL_MASTER needs {PREFIX}REDIS_SENTINELS")
        return None
    if not master:
        raise ConfigError(f"{PREFIX}REDIS_SENTINELS needs {PREFIX}REDIS_SENTINEL_MASTER")
    parsed = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{PREFIX}REDIS_SENTINELS: {address!r} is not host:port")
        parsed.append((host, int(port)))
    return Sentinels(tuple(parsed), master)


def _categories(names: list[str]) -> tuple[str, ...]:
    if not names:
        return DEFAULT_CONSENT_CATEGORIES
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name) or name == "all":
            raise ConfigError(
                f"{PREFIX}CONSENT_CATEGORIES: {name!r} is not a category name"
                " (lower case letters, digits and _; 'all' is always one)"
            )
    return tuple(dict.fromkeys(names))


class _Reader:
    """Typed access to ``WAWINDOW_*`` variables, with ``*_FILE`` fallbacks."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str | None = None) -> str | None:
        var = PREFIX + name
        direct = self._env.get(var)
        path = self._env.get(var + "_FILE")
        if direct is not None and path is not None:
            raise ConfigError(f"{var} and {var}_FILE are both set; set only one")
        if path is not None:
            try:
                return Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{var}_FILE: cannot read {path}: {exc.strerror}") from None
        if direct is None:
            return default
        return direct.strip()

    def csv(self, name: str) -> list[str]:
        raw = self.text(name) or ""
        return [part.strip() for part in raw.replace("\n", ",").split(",") if part.strip()]

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self.optional_integer(name, low=low, high=high)
        return default if value is None else value

    def optional_integer(self, name: str, *, low: int, high: int | None = None) -> int | None:
        raw = self.text(name)
        if raw is None or raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be a whole number, not {raw!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(f"{PREFIX}{name} must be {bounds}, not {value}")
        return value

    def seconds_list(self, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        parts = self.csv(name)
        if not parts:
            return default
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be whole seconds, comma-separated") from None
        if any(v <= 0 or v >= DAY for v in values):
            raise ConfigError(f"{PREFIX}{name} must be between 1 and 86399 seconds each")
        return values

    def boolean(self, name: str, *, default: bool) -> bool:
        raw = (self.text(name) or "").lower()
        if raw == "":
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{PREFIX}{name} must be true or false, not {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = (self.text(name) or default).lower()
        if raw not in allowed:
            raise ConfigError(f"{PREFIX}{name} must be one of {', '.join(allowed)}, not {raw!r}")
        return raw


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where downloaded tools (the Kafka jars) and local service data live, outside git."""
    env = os.environ if env is None else env
    if env.get(PREFIX + "CACHE_DIR"):
        return Path(env[PREFIX + "CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wawindow"
