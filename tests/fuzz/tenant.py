"""A tenant to fuzz as: registered, signed in and used through the API, over any
requests-like session (the in-process app's, or one on a live server)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

PASSWORD = "a long enough passphrase"
PLAN_CODES = ("free", "starter", "team", "business")


@dataclass(frozen=True)
class FuzzTenant:
    """The owner's access token, and real values of parameters by name: the tenant's
    resources (``run_id``, ``conversation_id``, ...) and the plans (``plan_code``)."""

    access_token: str
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def sign_up_and_use(client: Any, *, subscribe: bool = True) -> tuple[dict[str, Any], FuzzTenant]:
    """Registers a tenant, signs its owner in and makes, through the API, a conversation, a
    run, a subscription to the team plan (seats to invite) and an invitation. ``client`` is a
    requests-like session on the API."""
    email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
    registered = _expect(
        client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "tenant_name": "Fuzz"},
        ),
        201,
    )
    pair = _expect(
        client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}), 200
    )
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    chat = _expect(
        client.post("/api/v1/chat", json={"message": "hello fuzz"}, headers=headers), 202
    )
    if subscribe:
        _expect(
            client.post(
                "/api/v1/billing/subscription",
                json={"plan_code": "team", "seats": 5},
                headers=headers,
            ),
            201,
        )
    invitation = _expect(
        client.post(
            "/api/v1/tenant/invitations",
            json={"email": f"invitee-{uuid.uuid4().hex[:8]}@example.com", "role": "member"},
            headers=headers,
        ),
        201,
    )
    tenant = FuzzTenant(
        access_token=pair["access_token"],
        values={
            "plan_code": PLAN_CODES,
            "run_id": (chat["run_id"],),
            "conversation_id": (chat["conversation_id"],),
            "ticket": tuple(parse_qs(urlsplit(chat["stream_url"]).query)["ticket"]),
            "invitation_id": (invitation["id"],),
            "user_id": (registered["user"]["id"],),
        },
    )
    return registered, tenant


def _expect(response: Any, status: int) -> dict[str, Any]:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}, not {status}: {response.text}"
        )
    body: dict[str, Any] = response.json()
    return body
