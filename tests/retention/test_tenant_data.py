"""Deleting all of a tenant's data: every tenant table, table by table, and nobody else's."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer
from switchboard.models import (
    Message,
    ServiceAccount,
    ServiceAccountCredential,
    Tenant,
    TenantDataDeletion,
)
from switchboard.retention.errors import DeletionNotFoundError
from switchboard.retention.jobs import PURGE_TENANT
from switchboard.retention.tenant_data import (
    PURGE,
    TENANT_TABLES,
    check_classified,
    purge_tenant,
    request_deletion,
    tenant_tables,
)
from switchboard.runs.events import stream_key
from switchboard.settings import Settings
from tests.retention.seed import Seeded, seed_tenant
from tests.support.auth import bearer
from tests.support.waiting import eventually

PROBLEM = "application/problem+json"


async def rows_per_tenant(sessionmaker: SessionMaker, tenant_id: uuid.UUID) -> dict[str, int]:
    """For every table that names a tenant: how many of its rows name this one."""
    counts = {}
    async with sessionmaker() as session:
        for table in tenant_tables():
            query = select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            counts[table.name] = int(await session.scalar(query) or 0)
    return counts


async def dependants(sessionmaker: SessionMaker, seeded: Seeded) -> tuple[int, int]:
    async with sessionmaker() as session:
        messages = await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.conversation_id == seeded.conversation_id)
        )
        credentials = await session.scalar(
            select(func.count())
            .select_from(ServiceAccountCredential)
            .where(
                ServiceAccountCredential.service_account_id.in_(
                    select(ServiceAccount.id).where(ServiceAccount.tenant_id == seeded.tenant_id)
                )
            )
        )
    return int(messages or 0), int(credentials or 0)


def test_every_tenant_table_has_a_rule() -> None:
    check_classified()  # raises for a tenant table nobody classified
    names = {table.name for table in tenant_tables()}
    assert names == set(TENANT_TABLES)


async def test_purge_removes_every_tenant_row_and_nothing_of_another_tenant(
    sessionmaker: SessionMaker, redis: Redis, settings: Settings
) -> None:
    async with sessionmaker() as session, session.begin():
        mine = await seed_tenant(session)
        other = await seed_tenant(session)
        request = TenantDataDeletion(tenant_id=mine.tenant_id, requested_by=mine.user_id)
        session.add(request)
    for seeded in (mine, other):
        await redis.xadd(stream_key(str(seeded.run_id)), {"seq": "1"})
    before_mine = await rows_per_tenant(sessionmaker, mine.tenant_id)
    before_other = await rows_per_tenant(sessionmaker, other.tenant_id)
    # The seed must reach every tenant table, or the check below proves nothing for it.
    assert all(before_mine.values()), before_mine

    counts = await purge_tenant(sessionmaker, redis, request.id, batch_size=1)
    again = await purge_tenant(sessionmaker, redis, request.id, batch_size=1)

    after_mine = await rows_per_tenant(sessionmaker, mine.tenant_id)
    for table, rule in TENANT_TABLES.items():
        expected = 0 if rule == PURGE else before_mine[table]
        assert after_mine[table] == expected, (table, rule)
    assert await rows_per_tenant(sessionmaker, other.tenant_id) == before_other
    assert await dependants(sessionmaker, mine) == (0, 0)
    assert await dependants(sessionmaker, other) == (1, 1)
    assert not await redis.exists(stream_key(str(mine.run_id)))
    assert await redis.exists(stream_key(str(other.run_id)))
    assert counts["conversation"] == 1
    assert counts["run_event_buffers"] == 1
    assert again == counts  # done already: the recorded counts, nothing more
    async with sessionmaker() as session:
        record = await session.get(TenantDataDeletion, request.id)
    assert record is not None
    assert (record.status, record.deleted) == ("done", counts)
    assert record.finished_at is not None


async def test_a_request_is_recorded_once_and_its_purge_enqueued_each_time(
    sessionmaker: SessionMaker,
) -> None:
    async with sessionmaker() as session, session.begin():
        tenant = Tenant(name="t")
        session.add(tenant)
    owner, jobs = uuid.uuid4(), JobBuffer()

    async with sessionmaker() as session, session.begin():
        first, again = [
            await request_deletion(
                session, tenant_id=tenant.id, user_id=owner, confirm=str(tenant.id), jobs=jobs
            )
            for _ in range(2)
        ]
    nobody = uuid.uuid4()
    async with sessionmaker() as session:
        with pytest.raises(DeletionNotFoundError):
            await request_deletion(
                session, tenant_id=nobody, user_id=owner, confirm=str(nobody), jobs=jobs
            )

    assert again.id == first.id
    assert (first.tenant_id, first.requested_by, first.status) == (tenant.id, owner, "queued")
    assert [(job.name, tuple(job.args)) for job in jobs.pending] == [
        (PURGE_TENANT, (str(first.id),))
    ] * 2


@pytest.fixture
async def owner_of(committed_keys: KeySnapshot, settings: Settings) -> OwnerTokens:
    return OwnerTokens(committed_keys, settings)


class OwnerTokens:
    def __init__(self, keys: KeySnapshot, settings: Settings) -> None:
        self.keys, self.settings = keys, settings

    def __call__(self, seeded: Seeded, role: str = "owner") -> Mapping[str, str]:
        return bearer(self.keys, self.settings, seeded.tenant_id, role, subject=seeded.user_id)


async def test_only_the_owner_may_ask_and_must_confirm(
    client: AsyncClient, sessionmaker: SessionMaker, owner_of: OwnerTokens
) -> None:
    async with sessionmaker() as session, session.begin():
        mine = await seed_tenant(session)
    url = f"/api/v1/tenant/data?confirm={mine.tenant_id}"

    admin = await client.delete(url, headers=owner_of(mine, "admin"))
    member = await client.delete(url, headers=owner_of(mine, "member"))
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
    seen = await client.get(accepted.headers["location"], headers=owner_of(mine, "admin"))
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
