from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field
from pydantic.config import JsonDict

from switchboard.kit.text import InputModel

Role = Literal["owner", "admin", "member", "billing"]

# Bounds on free text keep oversized bodies from reaching bcrypt or the database.
Password = Field(min_length=1, max_length=1024)

# The examples of the OpenAPI document (/docs, /redoc) show one user and one tenant throughout.
_USER_ID = "5f0c3a8e-2b7d-4e1f-9a6c-3d8b2e7f1a40"
_TENANT_ID = "c2e1d7a4-6b3f-4a90-8e5d-1f2a3b4c5d6e"
_EMAIL = "ada@example.com"
_PASSWORD = "Lovelace notes, 1843"  # noqa: S105 (an example in the docs)
_KID = "7UXOdHeYGF-vMWQKQn9pNabG2fNs1Ho31AViWLgMh7U"
_JWT = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6IjdVWE9kSGVZR0Ytdk1XUUtRbjlwTmFiRzJmTnMxSG8zMUFWaVdMZ01oN1UiLCJ0"
    "eXAiOiJhdCtqd3QifQ.eyJzdWIiOiI1ZjBjM2E4ZS0yYjdkLTRlMWYtOWE2Yy0zZDhiMmU3ZjFhNDAifQ.c2lnbmF0dXJl"
)
_REFRESH = "rt_3VZEYhhRpuxd4qUFmMgy3w.H5_jMC-PTAdVlNs68MwQx2whYcEOzGi6BOJAf_SOmiw"
_USER: JsonDict = {
    "id": _USER_ID,
    "email": _EMAIL,
    "display_name": "Ada Lovelace",
    "email_verified": False,
    "created_at": "2026-12-03T09:30:00Z",
}
_TENANT: JsonDict = {
    "id": _TENANT_ID,
    "name": "Analytical Engines",
    "created_at": "2026-12-03T09:30:00Z",
}


class RegisterRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": _EMAIL,
                    "password": _PASSWORD,
                    "tenant_name": "Analytical Engines",
                    "display_name": "Ada Lovelace",
                }
            ]
        }
    )

    email: EmailStr = Field(max_length=320)
    password: str = Password
    tenant_name: str = Field(min_length=1, max_length=200)
    display_name: str | None = Field(None, max_length=200)


class LoginRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": _EMAIL, "password": _PASSWORD}]}
    )

    email: EmailStr = Field(max_length=320)
    password: str = Password
    tenant_id: uuid.UUID | None = None


class PasswordForm(InputModel):
    """The OAuth2 password grant as a form (RFC 6749, section 4.3.2), as `POST /token` reads it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"grant_type": "password", "username": _EMAIL, "password": _PASSWORD}]
        }
    )

    grant_type: Literal["password"] | None = None
    username: str = Field(min_length=1, max_length=320)
    password: str = Password
    scope: str = Field("", max_length=1024)
    client_id: str | None = Field(None, max_length=64)
    client_secret: str | None = Field(None, max_length=200)


class RefreshRequest(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"refresh_token": _REFRESH}]})

    refresh_token: str = Field(min_length=1, max_length=4096)


class ForgotPasswordRequest(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": _EMAIL}]})

    email: EmailStr = Field(max_length=320)


class ResetPasswordRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "prt_uwhZQ45nttJFX0bq0-UpbQ."
                    "azU_DUFO7lwK2WMymfZYBp-HGwknxG3t5yOmqcXeuqU",
                    "new_password": "a new and longer passphrase",
                }
            ]
        }
    )

    token: str = Field(min_length=1, max_length=200)
    new_password: str = Password


class ServiceTokenRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "client_id": "sa_5998981efdbdd3b614e97a77",
                    "client_secret": "JBrdzi5lVyArr-YBgVckgnlUL6ZVDY9FBRWnKzwIgjo",
                    "nonce": "04lIApo3tPBS35hEFmKw1gX4NSrNmY_Q",
                }
            ]
        }
    )

    client_id: str = Field(min_length=1, max_length=64)
    client_secret: str = Field(min_length=1, max_length=200)
    nonce: str = Field(min_length=16, max_length=128)


class TokenPair(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": _JWT,
                    "refresh_token": _REFRESH,
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_expires_in": 1_209_600,
                    "kid": _KID,
                }
            ]
        }
    )

    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int
    refresh_expires_in: int
    kid: str


class ServiceToken(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": _JWT,
                    "token_type": "bearer",
                    "expires_in": 600,
                    "kid": _KID,
                    "scope": "runs:read runs:write",
                }
            ]
        }
    )

    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int
    kid: str
    scope: str


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    display_name: str | None
    email_verified: bool
    created_at: datetime


class TenantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    created_at: datetime


class RegisterResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user": _USER, "tenant": _TENANT}]})

    user: UserRead
    tenant: TenantRead


class MeRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"user": _USER, "tenant": _TENANT, "roles": ["owner"]}]}
    )

    user: UserRead
    tenant: TenantRead
    roles: list[str]


class TenantMembershipRead(BaseModel):
    """One tenant the caller belongs to, for choosing ``tenant_id`` at login."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"tenant_id": _TENANT_ID, "name": "Analytical Engines", "role": "owner"}]
        }
    )

    tenant_id: uuid.UUID
    name: str
    role: str


# The pages of members and of invitations; a larger `limit` is a 422, never a larger page.
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 500


class MemberRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": _USER_ID,
                    "email": _EMAIL,
                    "display_name": "Ada Lovelace",
                    "role": "owner",
                    "joined_at": "2026-12-03T09:30:00Z",
                }
            ]
        }
    )

    user_id: uuid.UUID
    email: str
    display_name: str | None
    role: str
    joined_at: datetime


class MemberUpdate(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"role": "admin"}]})

    role: Role


class InvitationCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "charles@example.com", "role": "member"}]}
    )

    email: EmailStr = Field(max_length=320)
    role: Role


class InvitationRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "9d3e6f21-7c4b-4a58-b1e2-0f6a7d8c9b10",
                    "email": "charles@example.com",
                    "role": "member",
                    "expires_at": "2026-12-10T09:30:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    email: str
    role: str
    expires_at: datetime


class InvitationAccept(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "inv_M3CAmLVmZ2LEqgwlvnjVUw."
                    "P4Z43noUCJa0JhY4RwO6GzbTUV9jlyeuOyeFhOZOcSQ",
                    "password": "a passphrase of my own",
                    "display_name": "Charles Babbage",
                }
            ]
        }
    )

    token: str = Field(min_length=1, max_length=200)
    password: str | None = Field(None, min_length=1, max_length=1024)
    display_name: str | None = Field(None, max_length=200)
