"""One typed root settings object, composed of one model per area.

Variables are named ``<AREA>_<FIELD>`` (``DATABASE_URL`` -> ``settings.database.url``), read
from the process environment first and ``.env`` second. ``.env.example`` documents every one.
"""

from __future__ import annotations

import enum
import json
import sys
from functools import lru_cache
from typing import Any

from pydantic import (
    AnyUrl,
    BaseModel,
    Field,
    PostgresDsn,
    RedisDsn,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from switchboard.agents.settings import OfflineSettings, OpenAISettings
from switchboard.auth.settings import AuthSettings, IdpMode, NonceBackend
from switchboard.billing.settings import BillingSettings, StripeSettings
from switchboard.identity.settings import IdentitySettings
from switchboard.kit.secrets import insecure_default, is_insecure_default
from switchboard.mail.settings import SmtpSettings
from switchboard.retention.settings import RetentionSettings
from switchboard.runs.settings import RunsSettings

PRODUCTION_MIN_BCRYPT_COST = 12


class Environment(enum.StrEnum):
    development = "development"
    test = "test"
    staging = "staging"
    production = "production"

    @property
    def allows_insecure_defaults(self) -> bool:
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


class CelerySettings(BaseModel):
    broker_url: RedisDsn = Field(
        RedisDsn("redis://127.0.0.1:6379/1"), description="Celery broker (Redis)."
    )
    result_backend: RedisDsn = Field(
        RedisDsn("redis://127.0.0.1:6379/2"),
        description="Results of the few tasks that keep one; job state lives in Postgres.",
    )
    visibility_timeout_seconds: int = Field(
        3600,
        ge=60,
        description="Seconds before an unacknowledged task is redelivered to another worker.",
    )
    result_expires_seconds: int = Field(3600, ge=60, description="Lifetime of stored results.")
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus /metrics (0: none). Keep it internal.",
    )


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        case_sensitive=False,
        extra="ignore",
    )

    environment: Environment = Environment.development
    api: ApiSettings = ApiSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    celery: CelerySettings = CelerySettings()
    beat: BeatSettings = BeatSettings()
    flower: FlowerSettings = FlowerSettings()
    log: LogSettings = LogSettings()
    health: HealthSettings = HealthSettings()
    auth: AuthSettings = AuthSettings()
    identity: IdentitySettings = IdentitySettings()
    openai: OpenAISettings = OpenAISettings()
    offline: OfflineSettings = OfflineSettings()
    runs: RunsSettings = RunsSettings()
    stripe: StripeSettings = StripeSettings()
    billing: BillingSettings = BillingSettings()
    retention: RetentionSettings = RetentionSettings()
    smtp: SmtpSettings = SmtpSettings()

    @model_validator(mode="after")
    def _demo_idp_only_in_development(self) -> Settings:
        if self.auth.idp_mode is IdpMode.demo and self.environment is not Environment.development:
            raise ValueError("AUTH_IDP_MODE=demo is allowed only with ENVIRONMENT=development")
        return self

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> Settings:
        if self.environment.allows_insecure_defaults:
            return self
        offending = [
            env_name(area, field)
            for area, field, value, info in self._secrets()
            if is_insecure_default(info) and value == info.get_default(call_default_factory=True)
        ]
        if self.auth.nonce_backend is NonceBackend.memory:
            offending.append("AUTH_NONCE_BACKEND (memory is for development only)")
        if self.identity.bcrypt_cost < PRODUCTION_MIN_BCRYPT_COST:
            offending.append(f"IDENTITY_BCRYPT_COST (at least {PRODUCTION_MIN_BCRYPT_COST})")
        if offending:
            raise ValueError(
                f"insecure development defaults are refused when ENVIRONMENT={self.environment}:"
                f" set {', '.join(offending)}"
            )
        return self

    def _secrets(self) -> list[tuple[str, str, Any, FieldInfo]]:
        found = []
        for area in type(self).model_fields:
            model = getattr(self, area)
            if isinstance(model, BaseModel):
                for name, info in type(model).model_fields.items():
                    found.append((area, name, getattr(model, name), info))
        return found


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
        "# development, test, staging or production; insecure defaults are refused outside",
        "# development and test.",
        f"ENVIRONMENT={Environment.development.value}",
    ]
    for area, area_field in Settings.model_fields.items():
        model = area_field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
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
    ]
    return "\n".join(lines) + "\n"


class SettingsError(Exception):
    """Raised when the environment does not describe a valid configuration."""


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one message per offending variable."""
    try:
        return Settings(**overrides)
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
