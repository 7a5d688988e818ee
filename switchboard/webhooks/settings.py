"""Outbound webhook settings: ``WEBHOOKS_*``."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

from switchboard.kit.encoding import b64url_decode
from switchboard.kit.secrets import insecure_default

# After a failed attempt, the wait before the next: the first attempt goes at once, then
# 5 s, 5 min, 30 min, 2 h, 5 h and 10 h seven times, about three days in all.
RETRY_DELAYS_SECONDS = (5, 300, 1800, 7200, 18000, *(36000,) * 7)


class WebhookSettings(BaseModel):
    secret_encryption_key: SecretStr = insecure_default(
        "c3dpdGNoYm9hcmQtd2ViaG9vay1zZWNyZXQta2V5LTE",
        "Base64url 32-byte key encrypting endpoints' signing secrets at rest (AES-GCM).",
    )
    allow_private_targets: bool = Field(
        False,
        description="Deliver to loopback, private and link-local addresses and over plain"
        " http: for local testing; refused in staging and production.",
    )
    max_endpoints: int = Field(20, ge=1, le=1000, description="Endpoints one tenant may have.")
    max_payload_bytes: int = Field(
        65_536, ge=1024, description="Largest event body; larger data is cut to fit."
    )
    connect_timeout_seconds: float = Field(
        5, gt=0, description="Time to connect to a receiver (TCP and TLS)."
    )
    timeout_seconds: float = Field(
        15, gt=0, description="Whole time of one delivery attempt, the response included."
    )
    response_max_bytes: int = Field(
        4096, ge=0, description="Most bytes of a receiver's response body read, then dropped."
    )
    retry_delays_seconds: list[float] = Field(
        default_factory=lambda: [float(delay) for delay in RETRY_DELAYS_SECONDS],
        min_length=1,
        description="JSON list: the wait after each failed attempt before the next; when it"
        " runs out, the delivery has failed.",
    )
    disable_after_seconds: float = Field(
        432_000,
        gt=0,
        description="An endpoint that has only failed for this long is disabled (5 days).",
    )
    endpoint_concurrency: int = Field(
        4, ge=1, description="Attempts in flight to one endpoint at once, across all workers."
    )
    dispatch_seconds: float = Field(
        10, gt=0, description="How often beat sends the deliveries whose time has come."
    )
    secret_overlap_seconds: float = Field(
        86_400, ge=0, description="How long a rotated-out secret keeps signing alongside."
    )
    clients_per_worker: int = Field(
        256, ge=1, description="Receivers one worker process keeps a connection open to."
    )

    @field_validator("secret_encryption_key")
    @classmethod
    def _is_a_key(cls, value: SecretStr) -> SecretStr:
        try:
            key = b64url_decode(value.get_secret_value())
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError("must be the base64url encoding of 32 bytes")
        return value
