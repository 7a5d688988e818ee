"""Settings of the token issuer: ``AUTH_*`` variables."""

from __future__ import annotations

import enum

from pydantic import AnyUrl, BaseModel, Field, SecretStr, field_validator, model_validator

from switchboard.kit.secrets import insecure_default


class KeyStoreKind(enum.StrEnum):
    file = "file"
    vault = "vault"


class IdpMode(enum.StrEnum):
    internal = "internal"
    demo = "demo"


class NonceBackend(enum.StrEnum):
    redis = "redis"
    memory = "memory"


class AuthSettings(BaseModel):
    issuer: str = Field("http://127.0.0.1:8000", min_length=1, description="`iss` of our tokens.")
    audience: str = Field("switchboard", min_length=1, description="`aud` of our tokens.")
    access_token_ttl_seconds: int = Field(900, ge=60, le=86_400, description="Access token life.")
    service_token_ttl_seconds: int = Field(
        600, ge=60, le=3600, description="Service-account access token life."
    )
    stream_ticket_ttl_seconds: int = Field(
        60,
        ge=10,
        le=3600,
        description="Life of a stream ticket (in a run's stream_url): the time to open a stream"
        " with it; an open stream outlives it.",
    )
    leeway_seconds: int = Field(
        30, ge=0, le=300, description="Clock skew tolerated on exp/nbf/iat."
    )
    jwks_max_age_seconds: int = Field(
        300, ge=0, le=86_400, description="Cache-Control max-age of the JWKS document."
    )
    jwks_etag_salt: str = Field(
        "switchboard", description="Mixed into the JWKS ETag; change it to invalidate caches."
    )
    publish_margin_seconds: int = Field(
        300, ge=0, description="Extra wait beyond the JWKS max-age before a new key may sign."
    )
    key_signing_days: float = Field(
        30, gt=0, description="How long a key signs before the rotation task replaces it."
    )
    dual_signing_overlap_minutes: int = Field(
        60,
        ge=1,
        description="After a cutover the old key still verifies this long, then is removed.",
    )
    keyring_refresh_seconds: int = Field(
        30, ge=1, le=300, description="How often each process reloads the key set."
    )
    rotation_check_minutes: float = Field(
        60, gt=0, description="Period of the scheduled auth.keys.rotate task."
    )
    key_store: KeyStoreKind = Field(KeyStoreKind.file, description="file or vault.")
    key_dir: str = Field(".run/keys", description="File key store: directory of encrypted keys.")
    key_encryption_key: SecretStr = insecure_default(
        "c3dpdGNoYm9hcmQtZGV2LWtlay0zMi1ieXRlcy0xMjM",
        "File key store: base64url 32-byte key encrypting private keys at rest.",
    )
    vault_url: AnyUrl = Field(AnyUrl("http://127.0.0.1:8200"), description="Vault address.")
    vault_token: SecretStr = Field(SecretStr(""), description="Vault token (KV v2 read/write).")
    vault_mount: str = Field("secret", description="Vault KV v2 mount point.")
    vault_path: str = Field("switchboard/signing-keys", description="Vault path prefix for keys.")
    vault_namespace: str | None = Field(None, description="Vault Enterprise namespace, if any.")
    idp_mode: IdpMode = Field(
        IdpMode.internal,
        description="internal (this service's users) or demo (one fixed login, development only).",
    )
    refresh_token_pepper: SecretStr = insecure_default(
        "switchboard-dev-refresh-pepper",
        "HMAC key over refresh-token secrets; only their peppered hashes are stored.",
    )
    nonce_backend: NonceBackend = Field(
        NonceBackend.redis, description="Replay cache: redis, or memory (development only)."
    )

    @field_validator("vault_namespace", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def longest_token_ttl_seconds(self) -> int:
        return max(
            self.access_token_ttl_seconds,
            self.service_token_ttl_seconds,
            self.stream_ticket_ttl_seconds,
        )

    @model_validator(mode="after")
    def _overlap_outlives_every_token(self) -> AuthSettings:
        # A retired key must verify every token it signed until the last one expires, and a
        # process may keep signing with it until its next key-ring refresh.
        needed = self.longest_token_ttl_seconds + self.leeway_seconds + self.keyring_refresh_seconds
        if self.dual_signing_overlap_minutes * 60 < needed:
            raise ValueError(
                f"AUTH_DUAL_SIGNING_OVERLAP_MINUTES must cover the longest token life plus"
                f" leeway and key-ring refresh: at least {-(-needed // 60)} minutes"
            )
        return self
