"""Deleting all of a tenant's data on its owner's request: recorded, enqueued, done in batches.

Every table with a ``tenant_id`` column is either purged or kept for a stated reason
(``TENANT_TABLES``); a table missing from that map stops the purge, so a new table cannot be
forgotten. Rows of tables without a ``tenant_id`` go with their parents (messages with their
conversation, service-account credentials with their account). The request itself is kept as
the audit record, with what was deleted.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer
from switchboard.models import Base, TenantDataDeletion
from switchboard.retention.errors import (
    ConfirmationMismatchError,
    DeletionNotFoundError,
    UnclassifiedTableError,
)
from switchboard.retention.jobs import PURGE_TENANT
from switchboard.retention.metrics import DELETED
from switchboard.retention.repository import RetentionRepository
from switchboard.runs.events import stream_key

log = structlog.get_logger("switchboard.retention")

PURGE = "purge"
# Table name -> PURGE, or why its rows are kept.
TENANT_TABLES: dict[str, str] = {
    "conversation": PURGE,
    "run": PURGE,
    "membership": PURGE,
    "refresh_token": PURGE,
    "service_account": PURGE,
    "invitation": PURGE,
    "webhook_endpoint": PURGE,
    "webhook_event": PURGE,
    "webhook_delivery": PURGE,
    "webhook_attempt": PURGE,
    "billing_customer": "accounting: kept with the invoices it explains",
    "subscription": "accounting: kept with the invoices it explains",
    "usage_record": "accounting: token counts per run, no content",
    "usage_threshold": "accounting: when a period's token share was crossed, no content",
    "tenant_data_deletion": "the audit record of deletions",
}


def tenant_tables() -> list[Table]:
    """Every table with a ``tenant_id`` column, dependants first."""
    return [t for t in reversed(Base.metadata.sorted_tables) if "tenant_id" in t.c]


def check_classified() -> None:
    unknown = sorted(t.name for t in tenant_tables() if t.name not in TENANT_TABLES)
    if unknown:
        raise UnclassifiedTableError(f"tenant tables without a retention rule: {unknown}")


async def request_deletion(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    confirm: str,
    jobs: JobBuffer,
) -> TenantDataDeletion:
    """Records the request and enqueues the purge. A request still pending is returned and
    enqueued again (purging twice is harmless; a lost job is not)."""
    if confirm != str(tenant_id):
        raise ConfirmationMismatchError("confirm must be the tenant's id.")
    repo = RetentionRepository(session)
    if await repo.tenant(tenant_id, lock=True) is None:
        raise DeletionNotFoundError("No such tenant.")
    deletion = await repo.open_deletion(tenant_id)
    if deletion is None:
        deletion = TenantDataDeletion(tenant_id=tenant_id, requested_by=user_id, deleted={})
        await repo.add_deletion(deletion)
    jobs.enqueue(PURGE_TENANT, str(deletion.id))
    log.warning(
        "retention.tenant_deletion_requested",
        deletion_id=str(deletion.id),
        tenant_id=str(tenant_id),
        requested_by=str(user_id),
    )
    return deletion


async def get_deletion(
    session: AsyncSession, tenant_id: uuid.UUID, deletion_id: uuid.UUID
) -> TenantDataDeletion:
    deletion = await RetentionRepository(session).deletion(deletion_id)
    if deletion is None or deletion.tenant_id != tenant_id:
        raise DeletionNotFoundError("No such deletion request.")
    return deletion


async def purge_tenant(
    sessionmaker: SessionMaker, redis: Redis, deletion_id: uuid.UUID, *, batch_size: int
) -> dict[str, int]:
    """Deletes the tenant's rows table by table, in batches; safe to run again."""
    check_classified()
    async with sessionmaker() as session, session.begin():
        deletion = await RetentionRepository(session).deletion(deletion_id, lock=True)
        if deletion is None or deletion.status == "done":
            return dict(deletion.deleted) if deletion is not None else {}
        deletion.status, deletion.started_at = "running", datetime.now(UTC)
        tenant_id = deletion.tenant_id
    counts: dict[str, int] = {}
    try:
        counts["run_event_buffers"] = await _drop_event_buffers(sessionmaker, redis, tenant_id)
        for table in tenant_tables():
            if TENANT_TABLES[table.name] == PURGE:
                counts[table.name] = await _purge_table(sessionmaker, table, tenant_id, batch_size)
    except Exception as exc:
        await _finish(sessionmaker, deletion_id, "failed", counts, f"{type(exc).__name__}: {exc}")
        raise
    await _finish(sessionmaker, deletion_id, "done", counts, None)
    for name, count in counts.items():
        DELETED.labels(f"tenant:{name}").inc(count)
    log.warning(
        "retention.tenant_data_deleted",
        deletion_id=str(deletion_id),
        tenant_id=str(tenant_id),
        **counts,
    )
    return counts


async def _purge_table(
    sessionmaker: SessionMaker, table: Table, tenant_id: uuid.UUID, batch_size: int
) -> int:
    deleted = 0
    while True:
        async with sessionmaker() as session, session.begin():
            count = await RetentionRepository(session).delete_tenant_rows(
                table, tenant_id, batch_size
            )
        deleted += count
        if count < batch_size:
            return deleted


async def _drop_event_buffers(
    sessionmaker: SessionMaker, redis: Redis, tenant_id: uuid.UUID
) -> int:
    async with sessionmaker() as session:
        run_ids = await RetentionRepository(session).tenant_run_ids(tenant_id)
    dropped = 0
    for start in range(0, len(run_ids), 500):
        keys = [stream_key(str(run_id)) for run_id in run_ids[start : start + 500]]
        dropped += int(await redis.delete(*keys))
    return dropped


async def _finish(
    sessionmaker: SessionMaker,
    deletion_id: uuid.UUID,
    status: str,
    counts: dict[str, Any],
    error: str | None,
) -> None:
    async with sessionmaker() as session, session.begin():
        deletion = await RetentionRepository(session).deletion(deletion_id, lock=True)
        if deletion is not None:
            deletion.status = status
            deletion.deleted = counts
            deletion.error = error
            deletion.finished_at = datetime.now(UTC)
