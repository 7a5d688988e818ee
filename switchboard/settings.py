"""One typed root settings object, composed of one model per area.

Variables are named ``<AREA>_<FIELD>`` (``DATABASE_URL`` -> ``settings.database.url``), read
from the process environment first and ``.env`` second. ``.env.example`` documents every one.
"""

from __future__ import annotations

import enum
import json
import secrets
import sys
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from pydantic import (
    AnyUrl,
    BaseModel,
    Field,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    UrlConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from switchboard.agents.settings import AgentsSettings, OfflineSettings, OpenAISettings
from switchboard.auth.settings import AuthSettings, IdpMode, KeyStoreKind, NonceBackend
from switchboard.billing.settings import BillingSettings, StripeSettings
from switchboard.conversations.settings import ConversationSettings
from switchboard.identity.settings import IdentitySettings
from switchboard.kit.secrets import insecure_default, is_insecure_default
from switchboard.mail.settings import SmtpSettings
from switchboard.retention.settings import RetentionSettings
from switchboard.runs.settings import (
    FINISH_MARGIN_SECONDS,
    HARD_MARGIN_SECONDS,
    RunsSettings,
)
from switchboard.webhooks.settings import WebhookSettings

PRODUCTION_MIN_BCRYPT_COST = 12


class Environment(enum.StrEnum):
    development = "development"
    test = "test"
    staging = "staging"
    production = "production"

    @property
    def local(self) -> bool:
        """A developer's machine: development or test."""
        return self in (Environment.development, Environment.test)


class LogFormat(enum.StrEnum):
    auto = "auto"
    json = "json"
    console = "console"


class ApiSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface uvicorn binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port uvicorn listens on.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    public_url: AnyUrl = Field(
        AnyUrl("http://127.0.0.1:8000"), description="Base URL clients use to reach the API."
    )
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body accepted; larger bodies get 413."
    )
    keep_alive_seconds: int = Field(
        75,
        ge=1,
        description=(
            "How long an idle connection stays open for the next request. Keep it above the"
            " idle timeout of every client and proxy in front (60 s on most load balancers):"
            " otherwise the API may close a connection just as they send a request on it."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (JSON list)."
    )
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description=(
            "Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (JSON list of"
            " addresses and CIDR networks); from any other peer both headers are ignored."
        ),
    )
    docs_enabled: bool | None = Field(
        None,
        description=(
            "Serve /docs, /redoc and /openapi.json (true or false); empty: only in development"
            " and test."
        ),
    )
    metrics_token: SecretStr | None = Field(
        None,
        min_length=16,
        description=(
            "Bearer token /metrics requires. Empty: /metrics is open in development and test"
            " and answers 404 elsewhere."
        ),
    )

    @field_validator("docs_enabled", "metrics_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("trusted_proxies")
    @classmethod
    def _not_everyone(
        cls, value: list[IPv4Network | IPv6Network]
    ) -> list[IPv4Network | IPv6Network]:
        if any(network.prefixlen == 0 for network in value):
            raise ValueError("a /0 network would let every client choose its own address")
        return value


class DatabaseSettings(BaseModel):
    url: PostgresDsn = Field(
        PostgresDsn("postgresql+psycopg://postgres@127.0.0.1:5432/switchboard"),
        description="PostgreSQL URL; the psycopg 3 driver is used whatever the scheme says.",
    )
    pool_size: int = Field(10, ge=1, description="Connections kept open per process.")
    max_overflow: int = Field(10, ge=0, description="Extra connections allowed under load.")
    pool_timeout_seconds: float = Field(5.0, gt=0, description="Wait for a free connection.")
    connect_timeout_seconds: int = Field(5, ge=1, description="TCP connect timeout.")
    echo: bool = Field(False, description="Log every SQL statement.")


class RedisSettings(BaseModel):
    url: RedisDsn = Field(
        RedisDsn("redis://127.0.0.1:6379/0"),
        description="Redis for pub/sub, replay buffers, caches and counters.",
    )
    max_connections: int = Field(50, ge=1, description="Connection pool size per process.")
    socket_timeout_seconds: float = Field(5.0, gt=0, description="Socket read/write timeout.")


REDIS_SCHEMES = ("redis", "rediss")
# Celery's RabbitMQ transport (py-amqp) under its three names; amqps is AMQP over TLS.
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def is_amqp_url(url: str) -> bool:
    """A RabbitMQ URL rather than a Redis one."""
    return url.partition("://")[0].lower() in AMQP_SCHEMES


class AmqpBrokerDsn(AnyUrl):
    """A RabbitMQ URL as Celery reads it: ``amqp://user:password@host:5672/vhost``."""

    _constraints = UrlConstraints(allowed_schemes=list(AMQP_SCHEMES), host_required=True)


class CelerySettings(BaseModel):
    broker_url: RedisDsn | AmqpBrokerDsn = Field(
        RedisDsn("redis://127.0.0.1:6379/1"),
        description=(
            "Celery broker: Redis (redis://) or RabbitMQ (amqp://user:password@host:5672/vhost)."
            " RedBeat keeps its schedule on this Redis, or on REDIS_URL with RabbitMQ."
        ),
    )
    result_backend: RedisDsn = Field(
        RedisDsn("redis://127.0.0.1:6379/2"),
        description="Results of the few tasks that keep one; job state lives in Postgres.",
    )
    visibility_timeout_seconds: int = Field(
        3600,
        ge=60,
        description=(
            "Seconds before an unacknowledged task is redelivered to another worker, with a"
            " Redis broker. RabbitMQ has none: it redelivers when the worker's connection closes."
        ),
    )
    result_expires_seconds: int = Field(3600, ge=60, description="Lifetime of stored results.")
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus /metrics (0: none). Keep it internal.",
    )

    @property
    def amqp_broker(self) -> bool:
        """The broker is RabbitMQ rather than Redis."""
        return is_amqp_url(str(self.broker_url))

    @field_validator("broker_url", mode="wrap")
    @classmethod
    def _redis_or_rabbitmq(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        # One message naming the variable, rather than one per member of the union.
        if isinstance(value, str):
            scheme = value.partition("://")[0].lower() if "://" in value else ""
            if scheme not in (*REDIS_SCHEMES, *AMQP_SCHEMES):
                raise ValueError(
                    "the broker must be Redis (redis://, rediss://) or RabbitMQ (amqp://, amqps://,"
                    f" pyamqp://), not {f'{scheme}://' if scheme else 'a URL without a scheme'}"
                )
        try:
            return handler(value)
        except ValidationError as exc:
            problems = [e["msg"] for e in exc.errors() if e["type"] != "url_scheme"]
            raise ValueError(problems[0] if problems else str(exc)) from None


class BeatSettings(BaseModel):
    heartbeat_seconds: float = Field(60.0, gt=0, description="Period of the beat heartbeat task.")
    lock_timeout_seconds: int = Field(
        60,
        ge=5,
        description="RedBeat lock lifetime: a standby beat takes over within 1.2 times this.",
    )


class FlowerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Interface Flower binds to.")
    port: int = Field(5555, ge=1, le=65535, description="Port Flower listens on.")
    user: str = Field("admin", min_length=1, description="Flower basic-auth user.")
    password: SecretStr = insecure_default("switchboard-dev", "Flower basic-auth password.")


class LogSettings(BaseModel):
    level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$", description="Log level."
    )
    format: LogFormat = Field(
        LogFormat.auto, description="json, console, or auto (console in development only)."
    )


class HealthSettings(BaseModel):
    check_timeout_seconds: float = Field(
        2.0, gt=0, description="Each readiness check fails after this long."
    )


class TracesExporter(enum.StrEnum):
    otlp = "otlp"
    console = "console"
    none = "none"


class OtelSettings(BaseModel):
    """The standard OpenTelemetry variables that decide whether a process traces and where its
    spans go. The SDK reads the others (sampler, resource attributes, batching, exporter
    headers and timeouts) from the process environment itself."""

    sdk_disabled: bool = Field(False, description="true: no tracing, whatever else is set.")
    exporter_otlp_endpoint: AnyUrl | None = Field(
        None,
        description=(
            "OTLP/HTTP collector, e.g. http://jaeger:4318 (spans go to its /v1/traces). Set,"
            " every process traces (docs/operations/tracing.md)."
        ),
    )
    exporter_otlp_traces_endpoint: AnyUrl | None = Field(
        None,
        description="URL spans are posted to, over OTEL_EXPORTER_OTLP_ENDPOINT; set, tracing on.",
    )
    traces_exporter: TracesExporter | None = Field(
        None,
        description=(
            "otlp, console (spans on standard output) or none (no tracing); empty: otlp once"
            " an endpoint is set, else no tracing."
        ),
    )

    @field_validator(
        "exporter_otlp_endpoint", "exporter_otlp_traces_endpoint", "traces_exporter", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("exporter_otlp_endpoint", "exporter_otlp_traces_endpoint")
    @classmethod
    def _http(cls, value: AnyUrl | None) -> AnyUrl | None:
        if value is not None and value.scheme not in ("http", "https"):
            raise ValueError("an OTLP/HTTP endpoint is an http:// or https:// URL")
        return value

    @property
    def enabled(self) -> bool:
        """This process traces: an exporter or an endpoint is named, and the SDK is not off."""
        if self.sdk_disabled or self.traces_exporter is TracesExporter.none:
            return False
        named = self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint
        return self.traces_exporter is not None or named is not None

    @property
    def traces_url(self) -> str:
        """Where the OTLP exporter posts spans, as the OTLP specification derives it."""
        if self.exporter_otlp_traces_endpoint is not None:
            return str(self.exporter_otlp_traces_endpoint)
        base = str(self.exporter_otlp_endpoint or "http://localhost:4318")
        return f"{base.rstrip('/')}/v1/traces"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        case_sensitive=False,
        extra="ignore",
    )

    environment: Environment = Environment.production
    unread_secrets: list[str] = Field(
        default_factory=list,
        description=(
            "Secrets this process never reads (JSON list of variable names). Outside"
            " development and test their development default is not refused: the process"
            " gets a random value nobody knows instead."
        ),
    )
    api: ApiSettings = ApiSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    celery: CelerySettings = CelerySettings()
    beat: BeatSettings = BeatSettings()
    flower: FlowerSettings = FlowerSettings()
    log: LogSettings = LogSettings()
    health: HealthSettings = HealthSettings()
    otel: OtelSettings = OtelSettings()
    auth: AuthSettings = AuthSettings()
    identity: IdentitySettings = IdentitySettings()
    openai: OpenAISettings = OpenAISettings()
    offline: OfflineSettings = OfflineSettings()
    agents: AgentsSettings = AgentsSettings()
    conversations: ConversationSettings = ConversationSettings()
    runs: RunsSettings = RunsSettings()
    stripe: StripeSettings = StripeSettings()
    billing: BillingSettings = BillingSettings()
    retention: RetentionSettings = RetentionSettings()
    smtp: SmtpSettings = SmtpSettings()
    webhooks: WebhookSettings = WebhookSettings()

    @property
    def docs_served(self) -> bool:
        """/docs, /redoc and /openapi.json: as API_DOCS_ENABLED says, else only when local."""
        if self.api.docs_enabled is None:
            return self.environment.local
        return self.api.docs_enabled

    @property
    def metrics_open(self) -> bool:
        """/metrics answers without a token: no API_METRICS_TOKEN, on a developer's machine."""
        return self.api.metrics_token is None and self.environment.local

    @model_validator(mode="after")
    def _demo_idp_only_in_development(self) -> Settings:
        if self.auth.idp_mode is IdpMode.demo and self.environment is not Environment.development:
            raise ValueError("AUTH_IDP_MODE=demo is allowed only with ENVIRONMENT=development")
        return self

    @model_validator(mode="after")
    def _private_webhook_targets_only_locally(self) -> Settings:
        if self.webhooks.allow_private_targets and not self.environment.local:
            raise ValueError(
                "WEBHOOKS_ALLOW_PRIVATE_TARGETS=true is allowed only on a developer's machine"
                " (ENVIRONMENT=development or test)"
            )
        return self

    @model_validator(mode="after")
    def _runs_end_before_redelivery(self) -> Settings:
        # On Redis, an unacknowledged runs.execute would go to a second worker while the first
        # still holds the run; the task's hard limit must come first. RabbitMQ redelivers when
        # the worker's channel closes: its connection dropped, or a delivery outlived the
        # broker's consumer_timeout (30 minutes by default; docs/operations/scaling.md).
        if self.celery.amqp_broker:
            return self
        hard, margins = self.runs.task_time_limit, FINISH_MARGIN_SECONDS + HARD_MARGIN_SECONDS
        if self.celery.visibility_timeout_seconds <= hard:
            raise ValueError(
                f"CELERY_VISIBILITY_TIMEOUT_SECONDS ({self.celery.visibility_timeout_seconds})"
                f" must be above runs.execute's hard time limit, {hard} s (RUNS_MAX_SECONDS"
                f" {self.runs.max_seconds} + RUNS_PUBLISH_RETRY_SECONDS"
                f" {self.runs.publish_retry_seconds:g} + {margins}): lower RUNS_MAX_SECONDS or"
                " raise CELERY_VISIBILITY_TIMEOUT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _unread_secrets_are_secrets(self) -> Settings:
        known = {env_name(area, field) for area, field, _, _ in self._dev_secrets()}
        unknown = sorted(set(self.unread_secrets) - known)
        if unknown:
            raise ValueError(
                f"UNREAD_SECRETS names no secret with a development default: {', '.join(unknown)}"
            )
        return self

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> Settings:
        if self.environment.local:
            return self
        offending = []
        for area, field, value, default in self._dev_secrets():
            if value != default:
                continue
            name = env_name(area, field)
            if name in self.unread_secrets:
                # Read by mistake after all, a random value fails loudly; the public default
                # would quietly work.
                setattr(getattr(self, area), field, _unknowable(value))
            elif name == "AUTH_KEY_ENCRYPTION_KEY" and self.auth.key_store is not KeyStoreKind.file:
                continue  # only the file key store reads it
            else:
                offending.append(name)
        if self.auth.nonce_backend is NonceBackend.memory:
            offending.append("AUTH_NONCE_BACKEND (memory is for development only)")
        if self.identity.bcrypt_cost < PRODUCTION_MIN_BCRYPT_COST:
            offending.append(f"IDENTITY_BCRYPT_COST (at least {PRODUCTION_MIN_BCRYPT_COST})")
        if offending:
            raise ValueError(
                f"insecure development defaults are refused when ENVIRONMENT={self.environment}"
                f" (a developer's machine sets ENVIRONMENT=development): set {', '.join(offending)}"
            )
        return self

    def _dev_secrets(self) -> list[tuple[str, str, Any, Any]]:
        """Every secret with a development default: area, field, value and that default."""
        found = []
        for area in type(self).model_fields:
            model = getattr(self, area)
            if isinstance(model, BaseModel):
                for name, info in type(model).model_fields.items():
                    if is_insecure_default(info):
                        default = info.get_default(call_default_factory=True)
                        found.append((area, name, getattr(model, name), default))
        return found


def _unknowable(default: Any) -> Any:
    """A random value of the same shape as a secret's default (a secret, or a map of them)."""
    if isinstance(default, dict):
        return {key: _unknowable(value) for key, value in default.items()}
    return SecretStr(secrets.token_urlsafe(32))


def env_name(*loc: str | int) -> str:
    return "_".join(str(part) for part in loc).upper()


def _example_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps({str(key): _example_value(item) for key, item in value.items()})
    return str(value)


def render_env_example() -> str:
    """Every variable with its description and default, in the format of ``.env.example``."""
    lines = [
        "# Switchboard configuration. Every variable, with its default.",
        "# Generated by `switchboard config example`; the tests keep this file in step.",
        "",
        "# development, test, staging or production; unset, it is production. Insecure defaults",
        "# are refused outside development and test; this file is for a developer's machine.",
        f"ENVIRONMENT={Environment.development.value}",
    ]
    areas = []
    for name, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            areas.append((name, model))
        elif name != "environment":
            default = info.get_default(call_default_factory=True)
            lines += ["", f"# {info.description}", f"{env_name(name)}={_example_value(default)}"]
    for area, model in areas:
        lines += ["", f"# --- {area} ---"]
        for name, info in model.model_fields.items():
            default = info.get_default(call_default_factory=True)
            if info.description:
                lines.append(f"# {info.description}")
            lines.append(f"{env_name(area, name)}={_example_value(default)}")
    lines += [
        "",
        "# --- process environment only: read by prometheus-client itself, never from .env ---",
        "# Directory shared by the processes of one host for multiprocess metrics.",
        "# `make dev` and the container image set it; unset means single-process metrics.",
        "# PROMETHEUS_MULTIPROC_DIR=",
        "",
        "# --- process environment only: read by the OpenTelemetry SDK itself, never from .env ---",
        "# With tracing on: the sampler (unset: parentbased_always_on; parentbased_traceidratio",
        "# with OTEL_TRACES_SAMPLER_ARG=0.1 keeps a tenth of the traces), the spans' service name",
        "# (unset: switchboard-api, switchboard-worker-<queue>, ...), other resource attributes,",
        "# the collector's headers, the batch delay in milliseconds.",
        "# OTEL_TRACES_SAMPLER=",
        "# OTEL_TRACES_SAMPLER_ARG=",
        "# OTEL_SERVICE_NAME=",
        "# OTEL_RESOURCE_ATTRIBUTES=",
        "# OTEL_EXPORTER_OTLP_HEADERS=",
        "# OTEL_BSP_SCHEDULE_DELAY=",
    ]
    return "\n".join(lines) + "\n"


class SettingsError(Exception):
    """Raised when the environment does not describe a valid configuration."""


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one message per offending variable."""
    try:
        return Settings(**overrides)
    except PydanticSettingsError as exc:
        # A list or map variable that is not JSON; pydantic-settings names only the area.
        raise SettingsError(f"invalid configuration:\n  {exc}: lists and maps are JSON") from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = env_name(*error["loc"]) if error["loc"] else "settings"
            lines.append(f"  {name}: {error['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_or_exit() -> Settings:
    """For process entry points: a bad configuration ends start-up with one clear message."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
