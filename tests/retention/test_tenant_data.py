"""Deleting all of a tenant's data: every tenant table, table by table, and nobody else's."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

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
from tests.retention.seed import Seeded, rows_per_tenant, seed_tenant

PROBLEM = "application/problem+json"


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
