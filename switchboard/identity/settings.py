"""Settings of the identity service: ``IDENTITY_*`` variables."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator

from switchboard.kit.secrets import insecure_default


class IdentitySettings(BaseModel):
    bcrypt_cost: int = Field(
        12, ge=4, le=16, description="bcrypt work factor; production refuses less than 12."
    )
    password_peppers: dict[int, SecretStr] = Field(
        default_factory=lambda: {1: SecretStr("switchboard-dev-password-pepper-v1")},
        description="JSON map of pepper version to secret; hashes upgrade to the newest on login.",
        json_schema_extra={"insecure_default": True},
    )
    password_min_length: int = Field(12, ge=8, description="Shortest password accepted.")
    password_max_length: int = Field(128, ge=64, le=1024, description="Longest password accepted.")
    lockout_threshold: int = Field(
        5, ge=1, description="Failed logins within the window that lock an account."
    )
    lockout_window_seconds: int = Field(900, ge=60, description="Window counting failed logins.")
    lockout_base_seconds: int = Field(60, ge=1, description="First lock; doubles on each repeat.")
    lockout_max_seconds: int = Field(3600, ge=1, description="Longest single lock.")
    login_ip_max_attempts: int = Field(
        30,
        ge=1,
        description="Failed logins one IP may make per window; successful ones do not count.",
    )
    login_ip_window_seconds: int = Field(60, ge=1, description="Window of the per-IP login limit.")
    login_global_failures_per_minute: int = Field(
        3000,
        ge=1,
        description="Failed logins per minute from all addresses together; beyond, every login "
        "answers 429 until the minute ends.",
    )
    register_ip_per_hour: int = Field(20, ge=0, description="Sign-ups one IP may make per hour.")
    register_global_per_minute: int = Field(
        300, ge=0, description="Sign-ups accepted per minute from all addresses together."
    )
    forgot_ip_per_hour: int = Field(
        10, ge=0, description="Password-reset requests one IP may make per hour."
    )
    forgot_global_per_minute: int = Field(
        300, ge=0, description="Password-reset requests per minute from all addresses together."
    )
    reset_ip_per_hour: int = Field(
        30, ge=0, description="New-password submissions one IP may make per hour."
    )
    reset_global_per_minute: int = Field(
        300, ge=0, description="New-password submissions per minute from all addresses together."
    )
    refresh_ip_per_hour: int = Field(
        3600, ge=0, description="Token refreshes one IP may make per hour (users behind one NAT)."
    )
    refresh_global_per_minute: int = Field(
        20_000, ge=0, description="Token refreshes per minute from all addresses together."
    )
    accept_ip_per_hour: int = Field(
        30, ge=0, description="Invitation acceptances one IP may try per hour."
    )
    accept_global_per_minute: int = Field(
        300, ge=0, description="Invitation acceptances per minute from all addresses together."
    )
    refresh_token_ttl_seconds: int = Field(
        1_209_600, ge=300, description="Life of one refresh token (14 days)."
    )
    refresh_family_max_seconds: int = Field(
        2_592_000, ge=300, description="Absolute life of a refresh-token family (30 days)."
    )
    reset_token_ttl_seconds: int = Field(
        1800, ge=60, le=86_400, description="Life of a password-reset link."
    )
    reset_url: str = Field(
        "http://127.0.0.1:3000/reset-password?token=",
        description="Prefix of the password-reset link sent to users.",
    )
    invitation_ttl_hours: int = Field(
        72, ge=1, le=720, description="Life of an invitation link to join a tenant."
    )
    invitation_url: str = Field(
        "http://127.0.0.1:3000/accept-invitation?token=",
        description="Prefix of the invitation link sent to invitees.",
    )
    service_rate_limit_per_minute: int = Field(
        60, ge=1, description="Token requests per minute allowed to one service account."
    )
    ip_hash_salt: SecretStr = insecure_default(
        "switchboard-dev-ip-salt", "Salt of the IP and email hashes kept in login events."
    )

    @property
    def current_pepper_version(self) -> int:
        return max(self.password_peppers)

    @field_validator("password_peppers")
    @classmethod
    def _at_least_one(cls, value: dict[int, SecretStr]) -> dict[int, SecretStr]:
        if not value:
            raise ValueError("at least one pepper is needed")
        return value
