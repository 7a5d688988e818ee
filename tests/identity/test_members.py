"""A tenant's members through the real app and Postgres: listing, roles, removal, and roles
read fresh from Postgres rather than from the token."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.auth.keyring import KeySnapshot
from switchboard.models import RefreshToken, Subscription
from switchboard.settings import Settings
from tests.identity.support import Account, RecordingNotifier, claims, join, owner, uid
from tests.support.auth import bearer
from tests.support.members import NewMember

PROBLEM = "application/problem+json"
MEMBERS = "/api/v1/tenant/members"

pytestmark = pytest.mark.usefixtures("committed_keys")


@pytest.fixture
def notifier(app: FastAPI, client: AsyncClient) -> RecordingNotifier:
    recording = RecordingNotifier()
    app.state.notifier = recording
    return recording


@pytest.fixture
async def acme(client: AsyncClient, db_session: AsyncSession) -> Account:
    """An owner signed in to a tenant paying for ten seats."""
    account = await owner(client)
    db_session.add(
        Subscription(
            tenant_id=uuid.UUID(account.tenant_id), plan_code="team", seats=10, status="active"
        )
    )
    await db_session.commit()
    return account


async def refresh(client: AsyncClient, account: Account) -> int:
    response = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account.pair["refresh_token"]}
    )
    return response.status_code


async def set_role(client: AsyncClient, by: Account, user_id: str, role: str) -> int:
    response = await client.patch(f"{MEMBERS}/{user_id}", json={"role": role}, headers=by.headers)
    return response.status_code


async def test_any_member_lists_the_members(
    client: AsyncClient, notifier: RecordingNotifier, acme: Account
) -> None:
    member = await join(client, notifier, acme, "member")

    listed = await client.get(MEMBERS, headers=member.headers)

    assert listed.status_code == 200
    rows = {row["user_id"]: row for row in listed.json()}
    assert set(rows) == {acme.user_id, member.user_id}
    assert set(rows[member.user_id]) == {"user_id", "email", "display_name", "role", "joined_at"}
    assert rows[member.user_id]["email"] == member.email
    assert rows[member.user_id]["display_name"] == "Invited"
    assert rows[member.user_id]["role"] == "member"
    assert rows[acme.user_id]["role"] == "owner"


async def test_owners_and_admins_change_roles_but_only_owners_touch_owner(
    client: AsyncClient, notifier: RecordingNotifier, acme: Account
) -> None:
    admin = await join(client, notifier, acme, "admin")
    member = await join(client, notifier, acme, "member")

    to_billing = await client.patch(
        f"{MEMBERS}/{member.user_id}", json={"role": "billing"}, headers=admin.headers
    )
    admin_grants_owner = await set_role(client, admin, member.user_id, "owner")
    admin_demotes_owner = await set_role(client, admin, acme.user_id, "admin")
    member_changes = await set_role(client, member, admin.user_id, "member")
    owner_grants_owner = await set_role(client, acme, member.user_id, "owner")
    bad_role = await set_role(client, acme, member.user_id, "operator")

    assert to_billing.status_code == 200
    assert to_billing.json()["role"] == "billing"
    assert to_billing.json()["user_id"] == member.user_id
    assert (admin_grants_owner, admin_demotes_owner) == (403, 403)
    assert member_changes == 403
    assert owner_grants_owner == 200
    assert bad_role == 422


async def test_the_last_owner_can_be_neither_demoted_nor_removed(
    client: AsyncClient, notifier: RecordingNotifier, acme: Account
) -> None:
    demoted = await client.patch(
        f"{MEMBERS}/{acme.user_id}", json={"role": "admin"}, headers=acme.headers
    )
    removed = await client.delete(f"{MEMBERS}/{acme.user_id}", headers=acme.headers)
    second = await join(client, notifier, acme, "owner")
    # With a second owner, either may step down, but not both.
    first_steps_down = await set_role(client, acme, acme.user_id, "member")
    second_leaves = await client.delete(f"{MEMBERS}/{second.user_id}", headers=second.headers)

    for response in (demoted, removed):
        assert response.status_code == 409
        assert response.json()["code"] == "identity.last_owner"
        assert response.headers["content-type"] == PROBLEM
    assert first_steps_down == 200
    assert second_leaves.status_code == 409
    listed = (await client.get(MEMBERS, headers=second.headers)).json()
    assert sorted(row["role"] for row in listed) == ["member", "owner"]


async def test_a_removed_members_sessions_end_at_once(
    client: AsyncClient, notifier: RecordingNotifier, acme: Account
) -> None:
    member = await join(client, notifier, acme, "member")
    stays = await join(client, notifier, acme, "member")

    removed = await client.delete(f"{MEMBERS}/{member.user_id}", headers=acme.headers)

    assert removed.status_code == 204
    assert await refresh(client, member) == 401
    assert await refresh(client, stays) == 200
    # Its access token is still within its life, but the membership is read fresh.
    listed = await client.get(MEMBERS, headers=member.headers)
    assert listed.status_code == 401
    again = await client.delete(f"{MEMBERS}/{member.user_id}", headers=acme.headers)
    assert again.status_code == 404
    assert again.json()["code"] == "identity.member_not_found"


async def test_a_demoted_admin_is_refused_at_once_with_a_token_saying_admin(
    client: AsyncClient, notifier: RecordingNotifier, acme: Account, db_session: AsyncSession
) -> None:
    admin = await join(client, notifier, acme, "admin")
    member = await join(client, notifier, acme, "member")
    assert await set_role(client, admin, member.user_id, "billing") == 200

    assert await set_role(client, acme, admin.user_id, "member") == 200

    assert claims(admin.pair)["roles"] == ["admin"]  # its token, still valid, says admin
    assert await set_role(client, admin, member.user_id, "member") == 403
    invited = await client.post(
        "/api/v1/tenant/invitations",
        json={"email": f"{uid()}@example.com", "role": "member"},
        headers=admin.headers,
    )
    assert invited.status_code == 403
    assert invited.json()["code"] == "auth.forbidden"
    assert (await client.get(MEMBERS, headers=admin.headers)).status_code == 200
    # Lowering the role ended its sessions of the tenant, too.
    assert await refresh(client, admin) == 401
    revoked = await db_session.scalars(
        select(RefreshToken.revoked_reason).where(RefreshToken.user_id == uuid.UUID(admin.user_id))
    )
    assert set(revoked) == {"role_lowered"}


async def test_raising_a_role_keeps_the_members_sessions(
    client: AsyncClient, notifier: RecordingNotifier, acme: Account
) -> None:
    member = await join(client, notifier, acme, "member")

    assert await set_role(client, acme, member.user_id, "admin") == 200

    assert await refresh(client, member) == 200


async def test_another_tenants_member_is_not_found(
    client: AsyncClient, notifier: RecordingNotifier, acme: Account
) -> None:
    other = await owner(client)
    theirs = await join(client, notifier, other, "member")

    changed = await client.patch(
        f"{MEMBERS}/{theirs.user_id}", json={"role": "admin"}, headers=acme.headers
    )
    removed = await client.delete(f"{MEMBERS}/{theirs.user_id}", headers=acme.headers)
    unknown = await client.delete(f"{MEMBERS}/{uid()}", headers=acme.headers)

    assert changed.status_code == removed.status_code == unknown.status_code == 404
    assert await refresh(client, theirs) == 200
    listed = (await client.get(MEMBERS, headers=acme.headers)).json()
    assert theirs.user_id not in {row["user_id"] for row in listed}


async def test_member_routes_need_a_token(client: AsyncClient) -> None:
    assert (await client.get(MEMBERS)).status_code == 401
    assert (await client.delete(f"{MEMBERS}/{uid()}")).status_code == 401


async def test_billing_and_data_deletion_read_the_role_from_postgres(
    client: AsyncClient,
    new_member: NewMember,
    committed_keys: KeySnapshot,
    settings: Settings,
) -> None:
    """A token claiming `owner` for a membership that is `member` now is refused."""
    stored = await new_member(role="member")
    claims_owner = bearer(
        committed_keys, settings, stored.tenant_id, "owner", subject=stored.user_id
    )
    stranger = bearer(committed_keys, settings, stored.tenant_id, "owner")  # no membership

    subscribe = await client.post(
        "/api/v1/billing/subscription", json={"plan_code": "team"}, headers=claims_owner
    )
    delete_data = await client.delete(
        f"/api/v1/tenant/data?confirm={stored.tenant_id}", headers=claims_owner
    )
    manage = await client.delete(f"{MEMBERS}/{uid()}", headers=claims_owner)
    usage = await client.get("/api/v1/billing/usage", headers=claims_owner)
    strangers_usage = await client.get("/api/v1/billing/usage", headers=stranger)

    assert (subscribe.status_code, delete_data.status_code, manage.status_code) == (403, 403, 403)
    assert usage.status_code == 200  # any member reads usage
    assert strangers_usage.status_code == 401
