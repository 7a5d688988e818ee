"""Queries of retention: what outlived its window, deletion in batches, deletion requests."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, delete, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnClause

from switchboard.models import (
    Conversation,
    PasswordResetToken,
    RefreshToken,
    Run,
    StripeEvent,
    TaskFailure,
    Tenant,
    TenantDataDeletion,
    UserLoginEvent,
    WebhookDelivery,
    WebhookEvent,
)
from switchboard.retention.settings import RetentionSettings

# The ids of the rows past their window, one query per kind of data.


def idle_conversations(now: datetime, settings: RetentionSettings) -> Select[Any]:
    days = func.coalesce(Tenant.retention_days, settings.conversation_days)
    return (
        select(Conversation.id)
        .join(Tenant, Tenant.id == Conversation.tenant_id)
        .where(Conversation.updated_at < now - func.make_interval(0, 0, 0, days))
    )


def ended_refresh_tokens(now: datetime, settings: RetentionSettings) -> Select[Any]:
    # Spent tokens are kept while their family lives: presenting one again is how reuse is
    # detected. Once the family ended or was revoked, nothing needs them.
    cutoff = now - timedelta(days=settings.refresh_token_grace_days)
    return select(RefreshToken.id).where(
        or_(RefreshToken.family_expires_at < cutoff, RefreshToken.revoked_at < cutoff)
    )


def expired_reset_tokens(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.reset_token_grace_days)
    return select(PasswordResetToken.id).where(PasswordResetToken.expires_at < cutoff)


def old_login_events(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.login_event_days)
    return select(UserLoginEvent.id).where(UserLoginEvent.created_at < cutoff)


def processed_stripe_events(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.stripe_event_days)
    return select(StripeEvent.id).where(StripeEvent.processed_at < cutoff)


def old_task_failures(now: datetime, settings: RetentionSettings) -> Select[Any]:
    cutoff = now - timedelta(days=settings.task_failure_days)
    return select(TaskFailure.id).where(TaskFailure.failed_at < cutoff)


def old_webhook_events(now: datetime, settings: RetentionSettings) -> Select[Any]:
    """Outbound webhook events past their window whose deliveries are all over; their
    deliveries and delivery log go with them."""
    cutoff = now - timedelta(days=settings.webhook_event_days)
    unfinished: Select[Any] = select(literal_column("1")).where(
        WebhookDelivery.event_id == WebhookEvent.id,
        WebhookDelivery.status.in_(("pending", "queued", "sending")),
    )
    return select(WebhookEvent.id).where(WebhookEvent.created_at < cutoff, ~unfinished.exists())


class RetentionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count(self, query: Select[Any]) -> int:
        return int(
            await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        )

    async def delete_batch(
        self, key: InstrumentedAttribute[Any], query: Select[Any], batch_size: int
    ) -> int:
        """Deletes up to ``batch_size`` of the rows ``query`` selects by ``key``, skipping rows
        another transaction holds; returns how many went."""
        batch = (
            query.order_by(key).limit(batch_size).with_for_update(skip_locked=True, of=key.class_)
        )
        result = await self.session.execute(
            delete(key.class_).where(key.in_(batch.scalar_subquery()))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def existing_runs(self, run_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return set(await self.session.scalars(select(Run.id).where(Run.id.in_(run_ids))))

    async def tenant_run_ids(self, tenant_id: uuid.UUID) -> list[uuid.UUID]:
        return list(await self.session.scalars(select(Run.id).where(Run.tenant_id == tenant_id)))

    async def delete_tenant_rows(self, table: Table, tenant_id: uuid.UUID, batch_size: int) -> int:
        """Deletes up to ``batch_size`` of the tenant's rows of ``table``."""
        # ctid addresses a row whatever the table's key looks like.
        ctid: ColumnClause[Any] = literal_column("ctid")
        batch = select(ctid).select_from(table).where(table.c.tenant_id == tenant_id)
        result = await self.session.execute(
            delete(table).where(ctid.in_(batch.limit(batch_size).scalar_subquery()))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def tenant(self, tenant_id: uuid.UUID, *, lock: bool = False) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id, with_for_update=lock)

    async def open_deletion(self, tenant_id: uuid.UUID) -> TenantDataDeletion | None:
        """The tenant's deletion request still queued or running, if any."""
        return await self.session.scalar(
            select(TenantDataDeletion).where(
                TenantDataDeletion.tenant_id == tenant_id,
                TenantDataDeletion.status.in_(("queued", "running")),
            )
        )

    async def add_deletion(self, deletion: TenantDataDeletion) -> None:
        self.session.add(deletion)
        await self.session.flush()

    async def deletion(
        self, deletion_id: uuid.UUID, *, lock: bool = False
    ) -> TenantDataDeletion | None:
        return await self.session.get(TenantDataDeletion, deletion_id, with_for_update=lock)
