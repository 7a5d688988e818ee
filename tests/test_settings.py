from __future__ import annotations

from pathlib import Path

import pytest

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
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        *PRODUCTION_SECRETS,
        "ENVIRONMENT",
        "IDENTITY_BCRYPT_COST",
        "AUTH_IDP_MODE",
        "AUTH_NONCE_BACKEND",
        "DATABASE_POOL_SIZE",
        "DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


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
        if area == "environment":
            continue
        for name in field.annotation.model_fields:  # type: ignore[union-attr]
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
