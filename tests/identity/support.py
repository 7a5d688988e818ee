"""Helpers of the member and invitation tests: a recording notifier, sign-up and joining."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from httpx import AsyncClient

from tests.identity.test_routes import PASSWORD, login, new_email, register


@dataclass(frozen=True)
class Sent:
    email: str
    link: str
    tenant_name: str
    role: str

    @property
    def token(self) -> str:
        return self.link.split("?token=", 1)[1]


@dataclass
class RecordingNotifier:
    """Set on ``app.state.notifier``: keeps what would have been sent."""

    invitations: list[Sent] = field(default_factory=list)

    async def send_password_reset(self, *, email: str, link: str) -> None:
        pass

    async def send_invitation(self, *, email: str, link: str, tenant_name: str, role: str) -> None:
        self.invitations.append(Sent(email, link, tenant_name, role))

    def token_for(self, email: str) -> str:
        return [sent for sent in self.invitations if sent.email.lower() == email.lower()][-1].token


@dataclass(frozen=True)
class Account:
    email: str
    user_id: str
    tenant_id: str
    pair: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.pair['access_token']}"}


async def owner(client: AsyncClient) -> Account:
    """A new tenant ("Acme") and its owner, signed in."""
    email = new_email()
    registered = await register(client, email)
    return Account(
        email, registered["user"]["id"], registered["tenant"]["id"], await login(client, email)
    )


async def invite(
    client: AsyncClient, by: Account, email: str, role: str = "member"
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/tenant/invitations", json={"email": email, "role": role}, headers=by.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def accept(client: AsyncClient, token: str, password: str | None = PASSWORD) -> Any:
    body: dict[str, Any] = {"token": token, "display_name": "Invited"}
    if password is not None:
        body["password"] = password
    return await client.post("/api/v1/auth/invitations/accept", json=body)


async def join(
    client: AsyncClient, notifier: RecordingNotifier, by: Account, role: str = "member"
) -> Account:
    """A new user invited by ``by`` who accepts: a member of its tenant, signed in there."""
    email = new_email()
    await invite(client, by, email, role)
    accepted = await accept(client, notifier.token_for(email))
    assert accepted.status_code == 200, accepted.text
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {accepted.json()['access_token']}"}
    )
    return Account(email, me.json()["user"]["id"], by.tenant_id, dict(accepted.json()))


def claims(pair: dict[str, Any]) -> dict[str, Any]:
    """The access token's claims (its signature was checked by the API that issued it)."""
    payload = pair["access_token"].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def uid() -> str:
    return str(uuid.uuid4())
