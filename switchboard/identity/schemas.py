from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from switchboard.kit.text import InputModel

Role = Literal["owner", "admin", "member", "billing"]

# Bounds on free text keep oversized bodies from reaching bcrypt or the database.
Password = Field(min_length=1, max_length=1024)


class RegisterRequest(InputModel):
    email: EmailStr = Field(max_length=320)
    password: str = Password
    tenant_name: str = Field(min_length=1, max_length=200)
    display_name: str | None = Field(None, max_length=200)


class LoginRequest(InputModel):
    email: EmailStr = Field(max_length=320)
    password: str = Password
    tenant_id: uuid.UUID | None = None


class PasswordForm(InputModel):
    """The OAuth2 password grant as a form (RFC 6749, section 4.3.2), as `POST /token` reads it."""

    grant_type: Literal["password"] | None = None
    username: str = Field(min_length=1, max_length=320)
    password: str = Password
    scope: str = Field("", max_length=1024)
    client_id: str | None = Field(None, max_length=64)
    client_secret: str | None = Field(None, max_length=200)


class RefreshRequest(InputModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class ForgotPasswordRequest(InputModel):
    email: EmailStr = Field(max_length=320)


class ResetPasswordRequest(InputModel):
    token: str = Field(min_length=1, max_length=200)
    new_password: str = Password


class ServiceTokenRequest(InputModel):
    client_id: str = Field(min_length=1, max_length=64)
    client_secret: str = Field(min_length=1, max_length=200)
    nonce: str = Field(min_length=16, max_length=128)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int
    refresh_expires_in: int
    kid: str


class ServiceToken(BaseModel):
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
    user: UserRead
    tenant: TenantRead


class MeRead(BaseModel):
    user: UserRead
    tenant: TenantRead
    roles: list[str]


class TenantMembershipRead(BaseModel):
    """One tenant the caller belongs to, for choosing ``tenant_id`` at login."""

    tenant_id: uuid.UUID
    name: str
    role: str


# The pages of members and of invitations; a larger `limit` is a 422, never a larger page.
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 500


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    display_name: str | None
    role: str
    joined_at: datetime


class MemberUpdate(InputModel):
    role: Role


class InvitationCreate(InputModel):
    email: EmailStr = Field(max_length=320)
    role: Role


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: str
    expires_at: datetime


class InvitationAccept(InputModel):
    token: str = Field(min_length=1, max_length=200)
    password: str | None = Field(None, min_length=1, max_length=1024)
    display_name: str | None = Field(None, max_length=200)
