"""Invitations through the real app and Postgres: the link, seats, accepting, refusals."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.main import create_app
from switchboard.identity.notifier import LogNotifier
from switchboard.kit.db import create_sessionmaker
from switchboard.models import Invitation, Membership, Subscription, User
from switchboard.settings import Settings
from tests.identity.support import (
    RecordingNotifier,
    accept,
    claims,
    invite,
    join,
    owner,
    uid,
)
from tests.identity.test_routes import PASSWORD, login, new_email
from tests.support.app import serving

PROBLEM = "application/problem+json"
INVITATIONS = "/api/v1/tenant/invitations"

pytestmark = pytest.mark.usefixtures("committed_keys")


@pytest.fixture
def notifier(app: FastAPI, client: AsyncClient) -> RecordingNotifier:
    recording = RecordingNotifier()
    app.state.notifier = recording  # after the lifespan set the real one
    return recording


async def users_named(session: AsyncSession, email: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(User).where(func.lower(User.email) == email.lower())
    )
    return int(count or 0)


async def test_an_invitation_link_reaches_the_notifier_and_a_new_user_joins(
    client: AsyncClient, notifier: RecordingNotifier, settings: Settings
) -> None:
    acme = await owner(client)
    email = new_email()

    created = await invite(client, acme, email, "admin")
    listed = await client.get(INVITATIONS, headers=acme.headers)
    [sent] = notifier.invitations
    accepted = await accept(client, sent.token)

    assert set(created) == {"id", "email", "role", "expires_at"}
    assert (created["email"], created["role"]) == (email, "admin")
    expires = datetime.fromisoformat(created["expires_at"])
    expected = datetime.now(UTC) + timedelta(hours=settings.identity.invitation_ttl_hours)
    assert abs(expires - expected) < timedelta(minutes=1)
    assert [row["id"] for row in listed.json()] == [created["id"]]
    assert (sent.email, sent.tenant_name, sent.role) == (email, "Acme", "admin")
    assert sent.link.startswith(settings.identity.invitation_url)
    assert sent.token.startswith("inv_")
    assert accepted.status_code == 200, accepted.text
    pair = accepted.json()
    assert claims(pair)["tid"] == acme.tenant_id
    assert claims(pair)["roles"] == ["admin"]
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.json()["user"]["email"] == email
    assert me.json()["user"]["email_verified"] is True
    assert me.json()["user"]["display_name"] == "Invited"
    members = await client.get("/api/v1/tenant/members", headers=acme.headers)
    assert sorted(row["role"] for row in members.json()) == ["admin", "owner"]
    assert (await client.get(INVITATIONS, headers=acme.headers)).json() == []
    await login(client, email)  # the chosen password signs in


async def test_a_token_is_single_use(
    client: AsyncClient, notifier: RecordingNotifier, db_session: AsyncSession
) -> None:
    acme = await owner(client)
    member = await join(client, notifier, acme)

    again = await accept(client, notifier.token_for(member.email), password="another passphrase!")

    assert again.status_code == 401
    assert again.json()["code"] == "identity.invalid_invitation"
    assert again.headers["content-type"] == PROBLEM
    memberships = await db_session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.user_id == uuid.UUID(member.user_id))
    )
    assert memberships == 1


@pytest.mark.parametrize("how", ["expired", "revoked", "forged", "malformed", "reset token"])
async def test_refused_tokens_create_no_account(
    client: AsyncClient, notifier: RecordingNotifier, db_session: AsyncSession, how: str
) -> None:
    acme = await owner(client)
    email = new_email()
    created = await invite(client, acme, email)
    token = notifier.token_for(email)
    if how == "expired":
        await db_session.execute(
            update(Invitation)
            .where(Invitation.id == uuid.UUID(created["id"]))
            .values(expires_at=func.now() - timedelta(seconds=1))
        )
        await db_session.commit()
    elif how == "revoked":
        revoked = await client.delete(f"{INVITATIONS}/{created['id']}", headers=acme.headers)
        assert revoked.status_code == 204
    elif how == "forged":
        token = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    elif how == "malformed":
        token = "inv_" + token
    else:
        token = "prt_" + token.removeprefix("inv_")

    refused = await accept(client, token)

    assert refused.status_code == 401
    assert refused.json()["code"] == "identity.invalid_invitation"
    assert await users_named(db_session, email) == 0


async def test_a_new_account_needs_a_password_that_passes_the_policy(
    client: AsyncClient, notifier: RecordingNotifier, db_session: AsyncSession
) -> None:
    acme = await owner(client)
    email = new_email()
    await invite(client, acme, email)
    token = notifier.token_for(email)

    missing = await accept(client, token, password=None)
    weak = await accept(client, token, password="short")
    kept = await accept(client, token)  # neither refusal spent the link

    assert (missing.status_code, missing.json()["code"]) == (422, "identity.password_required")
    assert (weak.status_code, weak.json()["code"]) == (422, "identity.weak_password")
    assert kept.status_code == 200
    assert await users_named(db_session, email) == 1


async def test_an_existing_user_joins_a_second_tenant_and_signs_in_to_either(
    client: AsyncClient, notifier: RecordingNotifier
) -> None:
    acme = await owner(client)
    other = await owner(client)  # has an account and its own tenant
    await invite(client, acme, other.email.upper(), "billing")

    joined = await accept(client, notifier.token_for(other.email.upper()), password=None)
    to_acme = await client.post(
        "/api/v1/auth/login",
        json={"email": other.email, "password": PASSWORD, "tenant_id": acme.tenant_id},
    )
    to_own = await client.post(
        "/api/v1/auth/login",
        json={"email": other.email, "password": PASSWORD, "tenant_id": other.tenant_id},
    )
    tenants = await client.get("/api/v1/auth/tenants", headers=other.headers)

    assert joined.status_code == 200, joined.text
    assert claims(joined.json())["tid"] == acme.tenant_id
    assert claims(joined.json())["sub"] == other.user_id  # the same account, not a new one
    assert claims(to_acme.json())["tid"] == acme.tenant_id
    assert claims(to_acme.json())["roles"] == ["billing"]
    assert claims(to_own.json())["tid"] == other.tenant_id
    assert claims(to_own.json())["roles"] == ["owner"]
    assert tenants.status_code == 200
    # Both memberships were made in the test's one transaction, at one now(): no order here.
    assert sorted(tenants.json(), key=lambda row: row["role"]) == [
        {"tenant_id": acme.tenant_id, "name": "Acme", "role": "billing"},
        {"tenant_id": other.tenant_id, "name": "Acme", "role": "owner"},
    ]
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": to_acme.json()["refresh_token"]}
    )
    assert claims(refreshed.json())["tid"] == acme.tenant_id


async def test_the_tenants_list_needs_a_token(client: AsyncClient) -> None:
    response = await client.get("/api/v1/auth/tenants")
    assert response.status_code == 401


async def test_inviting_a_members_email_is_a_conflict(
    client: AsyncClient, notifier: RecordingNotifier
) -> None:
    acme = await owner(client)

    response = await client.post(
        INVITATIONS, json={"email": acme.email.upper(), "role": "member"}, headers=acme.headers
    )

    assert response.status_code == 409
    assert response.json()["code"] == "identity.already_member"
    assert response.headers["content-type"] == PROBLEM
    assert notifier.invitations == []


async def test_seats_exactly_full_refuse_an_invitation_until_one_is_freed(
    client: AsyncClient, notifier: RecordingNotifier
) -> None:
    acme = await owner(client)  # the free plan has 3 seats: the owner and two invitations
    first, second = new_email(), new_email()
    pending = await invite(client, acme, first)
    await invite(client, acme, second)

    full = await client.post(
        INVITATIONS, json={"email": new_email(), "role": "member"}, headers=acme.headers
    )
    # Inviting a pending address again replaces its invitation: no seat more is taken.
    again = await client.post(
        INVITATIONS, json={"email": first, "role": "admin"}, headers=acme.headers
    )
    listed = (await client.get(INVITATIONS, headers=acme.headers)).json()
    stale = await accept(client, notifier.invitations[0].token)
    await client.delete(f"{INVITATIONS}/{again.json()['id']}", headers=acme.headers)
    freed = await client.post(
        INVITATIONS, json={"email": new_email(), "role": "member"}, headers=acme.headers
    )

    assert full.status_code == 409
    assert full.json()["code"] == "identity.no_seat_free"
    assert full.headers["content-type"] == PROBLEM
    assert again.status_code == 201
    assert sorted((row["email"], row["role"]) for row in listed) == sorted(
        [(first, "admin"), (second, "member")]
    )
    assert pending["id"] not in {row["id"] for row in listed}
    assert stale.status_code == 401  # the replaced link no longer works
    assert freed.status_code == 201


async def test_seats_follow_the_subscription_and_an_expired_invitation_frees_its_seat(
    client: AsyncClient, notifier: RecordingNotifier, db_session: AsyncSession
) -> None:
    acme = await owner(client)
    db_session.add(
        Subscription(
            tenant_id=uuid.UUID(acme.tenant_id), plan_code="team", seats=2, status="active"
        )
    )
    await db_session.commit()
    created = await invite(client, acme, new_email())
    full = await client.post(
        INVITATIONS, json={"email": new_email(), "role": "member"}, headers=acme.headers
    )
    await db_session.execute(
        update(Invitation)
        .where(Invitation.id == uuid.UUID(created["id"]))
        .values(expires_at=func.now() - timedelta(seconds=1))
    )
    await db_session.commit()
    after_expiry = await client.post(
        INVITATIONS, json={"email": new_email(), "role": "member"}, headers=acme.headers
    )

    assert full.status_code == 409
    assert after_expiry.status_code == 201


async def test_lowering_seats_below_those_in_use_is_refused(
    client: AsyncClient, notifier: RecordingNotifier, db_session: AsyncSession
) -> None:
    acme = await owner(client)
    db_session.add(
        Subscription(
            tenant_id=uuid.UUID(acme.tenant_id), plan_code="team", seats=5, status="active"
        )
    )
    await db_session.commit()
    await join(client, notifier, acme)
    await invite(client, acme, new_email())  # owner, member, invitation: 3 in use

    below = await client.patch(
        "/api/v1/billing/subscription", json={"seats": 2}, headers=acme.headers
    )
    exact = await client.patch(
        "/api/v1/billing/subscription", json={"seats": 3}, headers=acme.headers
    )

    assert below.status_code == 409
    assert below.json()["code"] == "billing.seats_in_use"
    assert "3 seats are in use" in below.json()["detail"]
    assert exact.status_code == 200
    assert exact.json()["seats"] == 3


async def test_only_owners_and_admins_invite_and_only_owners_invite_owners(
    client: AsyncClient, notifier: RecordingNotifier, db_session: AsyncSession
) -> None:
    acme = await owner(client)
    db_session.add(
        Subscription(
            tenant_id=uuid.UUID(acme.tenant_id), plan_code="team", seats=10, status="active"
        )
    )
    await db_session.commit()
    admin = await join(client, notifier, acme, "admin")

    as_admin = await client.post(
        INVITATIONS, json={"email": new_email(), "role": "owner"}, headers=admin.headers
    )
    admin_lists = await client.get(INVITATIONS, headers=admin.headers)
    as_owner = await client.post(
        INVITATIONS, json={"email": new_email(), "role": "owner"}, headers=acme.headers
    )
    member = await join(client, notifier, acme, "member")
    as_member = await client.post(
        INVITATIONS, json={"email": new_email(), "role": "member"}, headers=member.headers
    )
    member_lists = await client.get(INVITATIONS, headers=member.headers)

    assert as_admin.status_code == 403
    assert admin_lists.status_code == 200
    assert as_owner.status_code == 201
    assert as_member.status_code == 403
    assert member_lists.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not an email", "role": "member"},
        {"email": "a@example.com", "role": "operator"},
        {"email": "a@example.com"},
    ],
)
async def test_bad_invitations_are_422_problems(
    client: AsyncClient, notifier: RecordingNotifier, body: dict[str, str]
) -> None:
    acme = await owner(client)
    response = await client.post(INVITATIONS, json=body, headers=acme.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_another_tenants_or_an_unknown_invitation_is_not_found(
    client: AsyncClient, notifier: RecordingNotifier
) -> None:
    acme, other = await owner(client), await owner(client)
    theirs = await invite(client, other, new_email())

    foreign = await client.delete(f"{INVITATIONS}/{theirs['id']}", headers=acme.headers)
    unknown = await client.delete(f"{INVITATIONS}/{uid()}", headers=acme.headers)
    still = await client.get(INVITATIONS, headers=other.headers)

    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["code"] == "identity.invitation_not_found"
    assert [row["id"] for row in still.json()] == [theirs["id"]]


async def test_the_log_notifier_writes_an_invitation_link_only_where_safe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = {"email": "a@x.io", "tenant_name": "Acme", "role": "member"}
    await LogNotifier(include_link=True).send_invitation(link="https://l/?token=SECRET1", **send)
    await LogNotifier(include_link=False).send_invitation(link="https://l/?token=SECRET2", **send)

    logged = [str(record.msg) for record in caplog.records]
    assert any("SECRET1" in line and "a@x.io" in line for line in logged)
    assert not any("SECRET2" in line for line in logged)
    assert any("identity.invitation_undelivered" in line for line in logged)


# --- committed for real: concurrency -------------------------------------------------------


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[tuple[AsyncClient, RecordingNotifier]]:
    """The app as deployed (each request commits), with a recording notifier."""
    app = create_app(settings)
    recording = RecordingNotifier()
    async with serving(app) as client:
        app.state.notifier = recording
        yield client, recording


async def test_concurrent_invitations_for_the_last_seat_admit_exactly_one(
    live: tuple[AsyncClient, RecordingNotifier], engine: AsyncEngine
) -> None:
    client, _ = live
    acme = await owner(client)
    await invite(client, acme, new_email())  # two of three seats in use
    emails = [new_email() for _ in range(6)]

    responses = await asyncio.gather(
        *(
            client.post(INVITATIONS, json={"email": email, "role": "member"}, headers=acme.headers)
            for email in emails
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    async with create_sessionmaker(engine)() as session:
        pending = await session.scalar(
            select(func.count())
            .select_from(Invitation)
            .where(
                Invitation.tenant_id == uuid.UUID(acme.tenant_id), Invitation.revoked_at.is_(None)
            )
        )
    assert pending == 2


async def test_concurrent_accepts_of_one_token_admit_exactly_one(
    live: tuple[AsyncClient, RecordingNotifier], engine: AsyncEngine
) -> None:
    client, notifier = live
    acme = await owner(client)
    email = new_email()
    await invite(client, acme, email)
    token = notifier.token_for(email)

    responses = await asyncio.gather(*(accept(client, token) for _ in range(4)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401, 401, 401], [r.text for r in responses]
    async with create_sessionmaker(engine)() as session:
        assert await users_named(session, email) == 1
        memberships = await session.scalar(
            select(func.count())
            .select_from(Membership)
            .join(User, User.id == Membership.user_id)
            .where(func.lower(User.email) == email.lower())
        )
    assert memberships == 1


async def test_login_without_a_tenant_picks_the_oldest_membership(
    live: tuple[AsyncClient, RecordingNotifier],
) -> None:
    client, notifier = live
    acme, other = await owner(client), await owner(client)
    await invite(client, acme, other.email)
    assert (await accept(client, notifier.token_for(other.email), password=None)).status_code == 200

    default = await login(client, other.email)
    tenants = (await client.get("/api/v1/auth/tenants", headers=other.headers)).json()

    assert claims(default)["tid"] == other.tenant_id
    assert [row["tenant_id"] for row in tenants] == [other.tenant_id, acme.tenant_id]


async def test_an_existing_account_is_refused_when_disabled_revoked_or_already_in(
    client: AsyncClient, notifier: RecordingNotifier, db_session: AsyncSession
) -> None:
    acme = await owner(client)
    db_session.add(
        Subscription(
            tenant_id=uuid.UUID(acme.tenant_id), plan_code="team", seats=10, status="active"
        )
    )
    await db_session.commit()
    disabled, revoked, inside = await owner(client), await owner(client), await owner(client)
    for account in (disabled, revoked, inside):
        await invite(client, acme, account.email)
    await db_session.execute(
        update(User).where(User.id == uuid.UUID(disabled.user_id)).values(status="disabled")
    )
    await db_session.commit()
    pending = (await client.get(INVITATIONS, headers=acme.headers)).json()
    [revoked_id] = [row["id"] for row in pending if row["email"] == revoked.email]
    await client.delete(f"{INVITATIONS}/{revoked_id}", headers=acme.headers)
    # Joined some other way meanwhile.
    db_session.add(
        Membership(
            tenant_id=uuid.UUID(acme.tenant_id), user_id=uuid.UUID(inside.user_id), role="member"
        )
    )
    await db_session.commit()

    answers = [
        await accept(client, notifier.token_for(account.email), password=None)
        for account in (disabled, revoked, inside)
    ]

    assert [answer.status_code for answer in answers] == [401, 401, 409]
    assert answers[0].json()["code"] == answers[1].json()["code"] == "identity.invalid_invitation"
    assert answers[2].json()["code"] == "identity.already_member"
    roles = await db_session.execute(
        select(Membership.user_id, Membership.role).where(
            Membership.tenant_id == uuid.UUID(acme.tenant_id)
        )
    )
    assert {str(user_id): role for user_id, role in roles} == {
        acme.user_id: "owner",
        inside.user_id: "member",
    }
    # A disabled account's still-valid access token is refused where roles are read fresh.
    assert (await client.get("/api/v1/tenant/members", headers=disabled.headers)).status_code == 401
