"""The tenant data routes: only the owner asks, with confirmation; a worker carries it out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from httpx import AsyncClient

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.models import TenantDataDeletion
from switchboard.settings import Settings
from tests.retention.seed import Seeded, rows_per_tenant, seed_tenant
from tests.support.auth import bearer
from tests.support.members import NewMember
from tests.support.waiting import eventually

PROBLEM = "application/problem+json"


@pytest.fixture
async def owner_of(committed_keys: KeySnapshot, settings: Settings) -> OwnerTokens:
    return OwnerTokens(committed_keys, settings)


class OwnerTokens:
    def __init__(self, keys: KeySnapshot, settings: Settings) -> None:
        self.keys, self.settings = keys, settings

    def __call__(self, seeded: Seeded, role: str = "owner") -> Mapping[str, str]:
        return bearer(self.keys, self.settings, seeded.tenant_id, role, subject=seeded.user_id)


async def test_only_the_owner_may_ask_and_must_confirm(
    client: AsyncClient, sessionmaker: SessionMaker, owner_of: OwnerTokens, new_member: NewMember
) -> None:
    async with sessionmaker() as session, session.begin():
        mine = await seed_tenant(session)
    url = f"/api/v1/tenant/data?confirm={mine.tenant_id}"
    # Roles are read from the memberships, so these are real members of the tenant.
    admin_headers = (await new_member(tenant_id=mine.tenant_id, role="admin")).headers
    member_headers = (await new_member(tenant_id=mine.tenant_id, role="member")).headers

    admin = await client.delete(url, headers=admin_headers)
    member = await client.delete(url, headers=member_headers)
    wrong = await client.delete("/api/v1/tenant/data?confirm=yes", headers=owner_of(mine))
    missing = await client.delete("/api/v1/tenant/data", headers=owner_of(mine))
    accepted = await client.delete(url, headers=owner_of(mine))
    repeated = await client.delete(url, headers=owner_of(mine))

    assert (admin.status_code, member.status_code) == (403, 403)
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "tenant.confirmation_mismatch"
    assert missing.status_code == 422
    for response in (admin, member, wrong, missing):
        assert response.headers["content-type"] == PROBLEM
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["status"] == "queued"
    assert accepted.headers["location"] == f"/api/v1/tenant/data/deletions/{body['id']}"
    assert repeated.json()["id"] == body["id"]  # still pending: the same request
    seen = await client.get(accepted.headers["location"], headers=admin_headers)
    assert seen.status_code == 200
    assert seen.json()["id"] == body["id"]


@pytest.mark.usefixtures("worker")
async def test_a_worker_carries_out_the_request(
    live_client: AsyncClient, committed: SessionMaker, owner_of: OwnerTokens
) -> None:
    async with committed() as session, session.begin():
        mine = await seed_tenant(session)

    accepted = await live_client.delete(
        f"/api/v1/tenant/data?confirm={mine.tenant_id}", headers=owner_of(mine)
    )
    assert accepted.status_code == 202

    async def done() -> dict[str, int] | None:
        async with committed() as session:
            record = await session.get(TenantDataDeletion, uuid.UUID(accepted.json()["id"]))
        return record.deleted if record is not None and record.status == "done" else None

    deleted = await eventually(done, timeout=60)
    assert deleted["conversation"] == 1
    assert deleted["membership"] == 1
    assert (await rows_per_tenant(committed, mine.tenant_id))["conversation"] == 0
