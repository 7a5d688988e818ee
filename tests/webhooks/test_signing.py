"""Endpoint secrets and Standard Webhooks signatures, checked by the Standard Webhooks
verifier a receiver would use; sealed secrets; the settings that guard both."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from switchboard.kit.encoding import b64url_encode
from switchboard.settings import Environment, SettingsError, load_settings
from switchboard.webhooks.settings import WebhookSettings
from switchboard.webhooks.signing import (
    SecretBox,
    SecretUnreadableError,
    new_secret,
    signature,
    signed_headers,
)
from tests.test_settings import PRODUCTION_SECRETS, production

BODY = json.dumps(
    {"type": "run.completed", "timestamp": "2026-12-03T12:00:00Z", "data": {"id": "r"}},
    separators=(",", ":"),
).encode()
MESSAGE_ID = "4d1f7c0e-5b0a-4a53-9d8e-6f1f2a3b4c5d"


def now() -> int:
    return int(time.time())


def test_a_signature_verifies_with_the_standard_webhooks_library() -> None:
    secret = new_secret()
    headers = signed_headers(MESSAGE_ID, now(), BODY, [secret])

    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == MESSAGE_ID
    assert headers["webhook-signature"].startswith("v1,")
    assert " " not in headers["webhook-signature"]


def test_the_signature_is_the_one_the_library_computes() -> None:
    secret = new_secret()
    timestamp = now()

    ours = signature(secret, MESSAGE_ID, timestamp, BODY)

    theirs = Webhook(secret).sign(MESSAGE_ID, datetime.fromtimestamp(timestamp, UTC), BODY.decode())
    assert ours == theirs


def test_two_secrets_sign_twice_and_either_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers(MESSAGE_ID, now(), BODY, [new, old])

    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(part.startswith("v1,") for part in signatures)
    assert signatures[0] != signatures[1]
    assert Webhook(new).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(old).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_a_tampered_message_or_another_secret_fails() -> None:
    secret = new_secret()
    timestamp = now()
    headers = signed_headers(MESSAGE_ID, timestamp, BODY, [secret])
    verifier = Webhook(secret)

    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY.replace(b'"r"', b'"s"'), headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY, {**headers, "webhook-id": MESSAGE_ID[:-1] + "e"})
    with pytest.raises(WebhookVerificationError):
        verifier.verify(BODY, {**headers, "webhook-timestamp": str(timestamp + 1)})
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    # The untampered message still verifies: the failures above are the tampering's.
    verifier.verify(BODY, headers)


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    secrets = {new_secret() for _ in range(50)}

    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert len(key) == 32


# --- sealed secrets -----------------------------------------------------------------------


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(32))


def test_a_sealed_secret_opens_for_its_endpoint(box: SecretBox) -> None:
    endpoint_id, secret = uuid.uuid4(), new_secret()

    sealed = box.seal(endpoint_id, secret)

    assert box.open(endpoint_id, sealed) == secret
    assert secret.encode() not in sealed
    assert base64.b64decode(secret.removeprefix("whsec_")) not in sealed
    # A fresh nonce each time: the same secret never seals to the same bytes.
    assert box.seal(endpoint_id, secret) != sealed


def test_a_sealed_secret_is_bound_to_its_endpoint(box: SecretBox) -> None:
    endpoint_id = uuid.uuid4()
    sealed = box.seal(endpoint_id, new_secret())

    with pytest.raises(SecretUnreadableError):
        box.open(uuid.uuid4(), sealed)


def test_another_key_or_an_altered_row_does_not_open(box: SecretBox) -> None:
    endpoint_id = uuid.uuid4()
    sealed = box.seal(endpoint_id, new_secret())
    altered = bytearray(sealed)
    altered[-1] ^= 1

    with pytest.raises(SecretUnreadableError):
        SecretBox(os.urandom(32)).open(endpoint_id, sealed)
    with pytest.raises(SecretUnreadableError):
        box.open(endpoint_id, bytes(altered))
    with pytest.raises(SecretUnreadableError):
        box.open(endpoint_id, sealed[:-1])


def test_the_box_takes_the_settings_key() -> None:
    key = os.urandom(32)
    settings = WebhookSettings(secret_encryption_key=SecretStr(b64url_encode(key)))
    endpoint_id, secret = uuid.uuid4(), new_secret()

    sealed = SecretBox.for_settings(settings).seal(endpoint_id, secret)

    assert SecretBox(key).open(endpoint_id, sealed) == secret
    for size in (16, 31, 33):
        with pytest.raises(ValueError, match="32 bytes"):
            SecretBox(os.urandom(size))


@pytest.mark.parametrize(
    "key",
    [
        b64url_encode(bytes(range(31))),
        b64url_encode(bytes(range(33))),
        b64url_encode(bytes(range(16))),
        "",
        "not base64 at all!",
    ],
)
def test_webhook_settings_refuse_a_key_that_is_not_32_bytes(key: str) -> None:
    with pytest.raises(ValidationError, match="32 bytes"):
        WebhookSettings(secret_encryption_key=SecretStr(key))


def test_webhook_settings_take_a_32_byte_key() -> None:
    key = b64url_encode(os.urandom(32))

    settings = WebhookSettings(secret_encryption_key=SecretStr(key))

    assert settings.secret_encryption_key.get_secret_value() == key


# --- private targets are for developers' machines -----------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting of the test session that production refuses (as tests/test_settings.py's
    ``clean_env``), and a real webhook encryption key."""
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
        "WEBHOOKS_ALLOW_PRIVATE_TARGETS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("WEBHOOKS_SECRET_ENCRYPTION_KEY", b64url_encode(os.urandom(32)))
    return monkeypatch


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_private_targets_are_refused_outside_developer_machines(
    env: pytest.MonkeyPatch, environment: str
) -> None:
    production(env)
    env.setenv("ENVIRONMENT", environment)
    assert load_settings(_env_file=None).webhooks.allow_private_targets is False

    env.setenv("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")

    with pytest.raises(SettingsError, match="WEBHOOKS_ALLOW_PRIVATE_TARGETS"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("environment", ["development", "test"])
def test_private_targets_are_allowed_on_developer_machines(
    env: pytest.MonkeyPatch, environment: str
) -> None:
    env.setenv("ENVIRONMENT", environment)
    env.setenv("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")

    settings = load_settings(_env_file=None)

    assert settings.environment is Environment(environment)
    assert settings.webhooks.allow_private_targets is True


def test_the_webhook_encryption_key_is_a_production_secret(env: pytest.MonkeyPatch) -> None:
    production(env)
    env.delenv("WEBHOOKS_SECRET_ENCRYPTION_KEY")

    with pytest.raises(SettingsError, match="WEBHOOKS_SECRET_ENCRYPTION_KEY"):
        load_settings(_env_file=None)
