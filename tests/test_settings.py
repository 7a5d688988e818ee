from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from switchboard.settings import (
    Environment,
    Settings,
    SettingsError,
    load_settings,
    render_env_example,
)

ROOT = Path(__file__).resolve().parents[1]


PRODUCTION_SECRETS = {
    "FLOWER_PASSWORD": "a-real-secret-from-the-vault",
    "AUTH_KEY_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    "AUTH_REFRESH_TOKEN_PEPPER": "another-real-secret",
    "IDENTITY_PASSWORD_PEPPERS": '{"1": "old-real-pepper", "2": "new-real-pepper"}',
    "IDENTITY_IP_HASH_SALT": "a-real-salt",
    "WEBHOOKS_SECRET_ENCRYPTION_KEY": "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting of the test session; ENVIRONMENT=development, as `make dev` sets it."""
    for name in (
        *PRODUCTION_SECRETS,
        "IDENTITY_BCRYPT_COST",
        "AUTH_IDP_MODE",
        "AUTH_NONCE_BACKEND",
        "AUTH_KEY_STORE",
        "DATABASE_POOL_SIZE",
        "DATABASE_URL",
        "UNREAD_SECRETS",
        "API_TRUSTED_PROXIES",
        "API_DOCS_ENABLED",
        "API_METRICS_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    return monkeypatch


def production(env: pytest.MonkeyPatch, *, without: tuple[str, ...] = ()) -> None:
    env.setenv("ENVIRONMENT", "production")
    for name, value in PRODUCTION_SECRETS.items():
        if name not in without:
            env.setenv(name, value)


def test_areas_are_read_from_prefixed_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_POOL_SIZE", "3")
    clean_env.setenv("API_CORS_ORIGINS", '["https://app.example"]')
    clean_env.setenv("CELERY_VISIBILITY_TIMEOUT_SECONDS", "7200")

    settings = load_settings(_env_file=None)

    assert settings.database.pool_size == 3
    assert settings.api.cors_origins == ["https://app.example"]
    assert settings.celery.visibility_timeout_seconds == 7200


def test_invalid_variable_is_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_POOL_SIZE", "lots")
    clean_env.setenv("DATABASE_URL", "mysql://nope")

    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)

    message = str(raised.value)
    assert "DATABASE_POOL_SIZE" in message
    assert "DATABASE_URL" in message


def test_dotenv_file_is_read_after_the_environment(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_POOL_SIZE=4\nREDIS_MAX_CONNECTIONS=9\n")
    clean_env.setenv("REDIS_MAX_CONNECTIONS", "11")

    settings = load_settings(_env_file=env_file)

    assert settings.database.pool_size == 4
    assert settings.redis.max_connections == 11


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_insecure_defaults_are_refused_outside_development(
    clean_env: pytest.MonkeyPatch, environment: str
) -> None:
    clean_env.setenv("ENVIRONMENT", environment)

    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None)
    for name in PRODUCTION_SECRETS:
        assert name in str(refused.value)

    for name, value in PRODUCTION_SECRETS.items():
        clean_env.setenv(name, value)
    assert load_settings(_env_file=None).environment == Environment(environment)

    clean_env.setenv("IDENTITY_BCRYPT_COST", "10")
    with pytest.raises(SettingsError, match="IDENTITY_BCRYPT_COST"):
        load_settings(_env_file=None)
    clean_env.setenv("IDENTITY_BCRYPT_COST", "12")

    clean_env.setenv("AUTH_NONCE_BACKEND", "memory")
    with pytest.raises(SettingsError, match="AUTH_NONCE_BACKEND"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("environment", ["development", "test"])
def test_insecure_defaults_are_allowed_on_developer_machines(
    clean_env: pytest.MonkeyPatch, environment: str
) -> None:
    clean_env.setenv("ENVIRONMENT", environment)
    assert load_settings(_env_file=None).flower.password.get_secret_value()


def test_env_example_documents_every_variable() -> None:
    committed = (ROOT / ".env.example").read_text()
    assert committed == render_env_example(), "run: switchboard config example > .env.example"
    for area, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            assert f"\n{area.upper()}=" in committed
            continue
        for name in model.model_fields:
            assert f"\n{area.upper()}_{name.upper()}=" in committed


def test_overlap_shorter_than_a_token_life_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AUTH_ACCESS_TOKEN_TTL_SECONDS", "3600")
    clean_env.setenv("AUTH_DUAL_SIGNING_OVERLAP_MINUTES", "30")

    with pytest.raises(SettingsError, match="AUTH_DUAL_SIGNING_OVERLAP_MINUTES"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("environment", ["test", "staging", "production"])
def test_demo_identity_mode_is_refused_outside_development(
    clean_env: pytest.MonkeyPatch, environment: str
) -> None:
    for name, value in PRODUCTION_SECRETS.items():
        clean_env.setenv(name, value)
    clean_env.setenv("ENVIRONMENT", environment)
    clean_env.setenv("AUTH_IDP_MODE", "demo")

    with pytest.raises(SettingsError, match="AUTH_IDP_MODE"):
        load_settings(_env_file=None)


def test_environment_defaults_to_production(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv("ENVIRONMENT")

    with pytest.raises(SettingsError, match="ENVIRONMENT=production") as refused:
        load_settings(_env_file=None)
    assert "FLOWER_PASSWORD" in str(refused.value)

    production(clean_env)
    clean_env.delenv("ENVIRONMENT")
    assert load_settings(_env_file=None).environment is Environment.production


def test_unread_secrets_get_a_random_value_instead_of_the_default(
    clean_env: pytest.MonkeyPatch,
) -> None:
    unread = ("FLOWER_PASSWORD", "IDENTITY_PASSWORD_PEPPERS")
    production(clean_env, without=unread)
    with pytest.raises(SettingsError, match="FLOWER_PASSWORD"):
        load_settings(_env_file=None)

    clean_env.setenv("UNREAD_SECRETS", json.dumps(unread))
    first, second = load_settings(_env_file=None), load_settings(_env_file=None)

    development = Settings(environment=Environment.development, _env_file=None)
    passwords = {s.flower.password.get_secret_value() for s in (first, second, development)}
    assert len(passwords) == 3  # neither the public default nor the same value twice
    peppers = first.identity.password_peppers
    assert peppers.keys() == development.identity.password_peppers.keys()
    assert peppers[1] != development.identity.password_peppers[1]
    # A secret that is given keeps its value even when listed.
    assert first.auth.refresh_token_pepper.get_secret_value() == "another-real-secret"


def test_unread_secrets_must_name_secrets(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("UNREAD_SECRETS", '["FLOWER_PASSWORD", "FLOWER_PASWORD", "API_HOST"]')

    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None)
    assert "no secret with a development default: API_HOST, FLOWER_PASWORD" in str(refused.value)


def test_key_encryption_key_is_refused_only_for_the_file_key_store(
    clean_env: pytest.MonkeyPatch,
) -> None:
    production(clean_env, without=("AUTH_KEY_ENCRYPTION_KEY",))
    with pytest.raises(SettingsError, match="AUTH_KEY_ENCRYPTION_KEY"):
        load_settings(_env_file=None)

    clean_env.setenv("AUTH_KEY_STORE", "vault")
    assert load_settings(_env_file=None).auth.key_store.value == "vault"


def test_trusted_proxies_are_addresses_or_networks(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("API_TRUSTED_PROXIES", '["10.0.0.0/8", "192.0.2.7", "fd00::/8"]')
    proxies = load_settings(_env_file=None).api.trusted_proxies
    assert [str(network) for network in proxies] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]

    for refused in ('["10.0.0.1/8"]', '["ingress"]', '["0.0.0.0/0"]', '["::/0"]'):
        clean_env.setenv("API_TRUSTED_PROXIES", refused)
        with pytest.raises(SettingsError, match="API_TRUSTED_PROXIES"):
            load_settings(_env_file=None)

    clean_env.setenv("API_TRUSTED_PROXIES", "10.0.0.0/8")
    with pytest.raises(SettingsError, match=r'"api".*JSON'):
        load_settings(_env_file=None)


def test_docs_toggle_and_metrics_token_read_empty_as_unset(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("API_DOCS_ENABLED", "")
    clean_env.setenv("API_METRICS_TOKEN", "")
    empty = load_settings(_env_file=None).api
    assert (empty.docs_enabled, empty.metrics_token) == (None, None)

    clean_env.setenv("API_DOCS_ENABLED", "true")
    clean_env.setenv("API_METRICS_TOKEN", "a-long-random-metrics-token")
    given = load_settings(_env_file=None).api
    assert given.docs_enabled is True
    assert given.metrics_token is not None

    clean_env.setenv("API_METRICS_TOKEN", "short")
    with pytest.raises(SettingsError, match="API_METRICS_TOKEN"):
        load_settings(_env_file=None)


def test_a_visibility_timeout_not_above_the_runs_hard_time_limit_is_refused(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("RUNS_MAX_SECONDS", "600")
    clean_env.setenv("RUNS_PUBLISH_RETRY_SECONDS", "30")
    runs = load_settings(_env_file=None).runs
    # The executor's own limit first, then Celery's soft limit, then its hard one.
    assert runs.max_seconds < runs.task_soft_time_limit < runs.task_time_limit

    clean_env.setenv("CELERY_VISIBILITY_TIMEOUT_SECONDS", str(runs.task_time_limit))
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None)
    message = str(refused.value)
    assert "CELERY_VISIBILITY_TIMEOUT_SECONDS" in message
    assert "RUNS_MAX_SECONDS" in message
    assert f"hard time limit, {runs.task_time_limit} s" in message

    clean_env.setenv("CELERY_VISIBILITY_TIMEOUT_SECONDS", str(runs.task_time_limit + 1))
    assert load_settings(_env_file=None).celery.visibility_timeout_seconds > runs.task_time_limit


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "amqps://switchboard:secret@rabbit.internal:5671/switchboard",
        "pyamqp://rabbit.internal/switchboard",
    ],
)
def test_the_broker_may_be_rabbitmq(clean_env: pytest.MonkeyPatch, url: str) -> None:
    clean_env.setenv("CELERY_BROKER_URL", url)

    celery = load_settings(_env_file=None).celery

    assert celery.amqp_broker is True
    assert str(celery.broker_url) == url


def test_a_redis_broker_is_read_as_before(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CELERY_BROKER_URL", "redis://broker.internal")

    celery = load_settings(_env_file=None).celery

    assert celery.amqp_broker is False
    assert str(celery.broker_url) == "redis://broker.internal:6379/0"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sqs://queue.example", "not sqs://"),
        ("https://rabbit.internal", "not https://"),
        ("rabbit.internal:5672", "not a URL without a scheme"),
        ("amqp://rabbit.internal:99999/", "invalid port number"),
    ],
)
def test_any_other_broker_is_refused_in_one_line(
    clean_env: pytest.MonkeyPatch, url: str, said: str
) -> None:
    clean_env.setenv("CELERY_BROKER_URL", url)

    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None)

    [line] = str(refused.value).splitlines()[1:]
    assert line.startswith("  CELERY_BROKER_URL: ")
    assert said in line
    if said.startswith("not "):
        assert "Redis (redis://, rediss://) or RabbitMQ (amqp://, amqps://, pyamqp://)" in line


def test_with_rabbitmq_the_visibility_timeout_is_not_compared_with_the_runs(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """RabbitMQ has no visibility timeout: it redelivers when a worker's connection closes."""
    clean_env.setenv("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    clean_env.setenv("CELERY_VISIBILITY_TIMEOUT_SECONDS", "60")
    clean_env.setenv("RUNS_MAX_SECONDS", "3000")

    settings = load_settings(_env_file=None)

    assert settings.celery.visibility_timeout_seconds < settings.runs.task_time_limit
