"""Settings of outgoing mail: ``SMTP_*`` variables."""

from __future__ import annotations

import enum

from pydantic import BaseModel, Field, SecretStr, field_validator


class SmtpSecurity(enum.StrEnum):
    starttls = "starttls"
    tls = "tls"
    none = "none"


class SmtpSettings(BaseModel):
    host: str | None = Field(
        None,
        description="SMTP server; unset, links go to the log in development and test.",
    )
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 starttls, 465 tls).")
    username: str | None = Field(None, description="SMTP login, if the server wants one.")
    password: SecretStr | None = Field(None, description="SMTP password.")
    security: SmtpSecurity = Field(
        SmtpSecurity.starttls,
        description="starttls (upgrade after connecting), tls (TLS from the start) or none.",
    )
    from_address: str = Field(
        "no-reply@switchboard.invalid",
        description="From address of every mail (a name may go first: Name <address>).",
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds to connect, and to wait for each reply of the server.",
    )
    max_retries: int = Field(
        10,
        ge=0,
        description="Retries of a mail the server could not take for now (backoff up to 10 min).",
    )

    @field_validator("host", "username", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def configured(self) -> bool:
        return self.host is not None
