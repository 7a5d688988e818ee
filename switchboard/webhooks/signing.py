"""Endpoint secrets and Standard Webhooks signatures.

A secret is ``whsec_`` and the base64 of 32 random bytes, the bytes being the HMAC key. At
rest it is sealed with AES-GCM under ``WEBHOOKS_SECRET_ENCRYPTION_KEY``, bound to its
endpoint's id, so a sealed secret copied onto another endpoint's row does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from switchboard.kit.encoding import b64url_decode
from switchboard.webhooks.settings import WebhookSettings

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_NONCE_BYTES = 12


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    message_id: str, timestamp: int, body: bytes, secrets_: Sequence[str]
) -> dict[str, str]:
    """The Standard Webhooks headers: one signature per secret, space-separated."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
    }


class SecretUnreadableError(Exception):
    """A sealed secret did not open: the wrong encryption key, or a row altered."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the webhook secret encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def for_settings(cls, settings: WebhookSettings) -> SecretBox:
        return cls(b64url_decode(settings.secret_encryption_key.get_secret_value()))

    def seal(self, endpoint_id: uuid.UUID, secret: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode("ascii"), endpoint_id.bytes)

    def open(self, endpoint_id: uuid.UUID, sealed: bytes) -> str:
        nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, endpoint_id.bytes).decode("ascii")
        except InvalidTag:
            raise SecretUnreadableError(
                f"the secret of endpoint {endpoint_id} does not open"
            ) from None
