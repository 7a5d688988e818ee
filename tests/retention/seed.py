"""Rows of one tenant in every table that holds tenant data, and their counts, for retention
tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.db import SessionMaker
from switchboard.models import (
    BillingCustomer,
    Conversation,
    Invitation,
    Membership,
    Message,
    RefreshToken,
    Run,
    ServiceAccount,
    ServiceAccountCredential,
    Subscription,
    Tenant,
    TenantDataDeletion,
    UsageRecord,
    UsageThreshold,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from switchboard.retention.tenant_data import tenant_tables


@dataclass
class Seeded:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    run_id: uuid.UUID


def _hex() -> str:
    return uuid.uuid4().hex


async def seed_tenant(
    session: AsyncSession, *, retention_days: int | None = None, idle: timedelta = timedelta(0)
) -> Seeded:
    """A tenant, a member, a conversation idle for ``idle`` with a message and a run, and a
    row in every other tenant table."""
    now = datetime.now(UTC)
    tenant = Tenant(name=f"t-{_hex()[:6]}", retention_days=retention_days)
    user = User(email=f"{_hex()}@example.com", password_hash="x", pepper_version=1)
    session.add_all([tenant, user])
    await session.flush()
    conversation = Conversation(
        tenant_id=tenant.id, user_id=user.id, title="c", updated_at=now - idle
    )
    account = ServiceAccount(tenant_id=tenant.id, name="ci", scopes=[])
    session.add_all([conversation, account])
    await session.flush()
    run = Run(
        tenant_id=tenant.id,
        user_id=user.id,
        conversation_id=conversation.id,
        status="succeeded",
        entry_agent="triage",
    )
    session.add(run)
    await session.flush()
    session.add_all(
        [
            Message(
                conversation_id=conversation.id,
                position=0,
                role="user",
                content="hello",
                run_id=run.id,
            ),
            Membership(user_id=user.id, tenant_id=tenant.id, role="owner"),
            RefreshToken(
                family_id=uuid.uuid4(),
                selector=_hex()[:32],
                secret_hash="h",
                user_id=user.id,
                tenant_id=tenant.id,
                issued_at=now,
                expires_at=now + timedelta(days=1),
                family_expires_at=now + timedelta(days=30),
            ),
            ServiceAccountCredential(
                service_account_id=account.id, client_id=_hex(), secret_hash="h"
            ),
            BillingCustomer(tenant_id=tenant.id, stripe_customer_id=f"cus_{_hex()[:14]}"),
            Subscription(tenant_id=tenant.id, plan_code="team", seats=1, status="active"),
            UsageRecord(
                tenant_id=tenant.id,
                run_id=run.id,
                input_tokens=1,
                output_tokens=2,
                period_start=now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
            ),
            TenantDataDeletion(tenant_id=tenant.id, requested_by=user.id, deleted={}),
            Invitation(
                tenant_id=tenant.id,
                email=f"{_hex()}@example.com",
                role="member",
                invited_by=user.id,
                selector=_hex()[:32],
                secret_hash="h",
                expires_at=now + timedelta(days=7),
            ),
            UsageThreshold(
                tenant_id=tenant.id,
                period_start=now.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
                percent=80,
                tokens=8,
                limit_tokens=10,
            ),
        ]
    )
    await session.flush()
    endpoint = WebhookEndpoint(
        tenant_id=tenant.id, url="https://hooks.example.com", events=["run.completed"], secret=b"s"
    )
    event = WebhookEvent(tenant_id=tenant.id, type="run.completed", data={"id": str(run.id)})
    session.add_all([endpoint, event])
    await session.flush()
    delivery = WebhookDelivery(
        tenant_id=tenant.id, endpoint_id=endpoint.id, event_id=event.id, status="succeeded"
    )
    session.add(delivery)
    await session.flush()
    session.add(
        WebhookAttempt(
            tenant_id=tenant.id,
            endpoint_id=endpoint.id,
            delivery_id=delivery.id,
            attempt=1,
            status="succeeded",
            response_status=200,
        )
    )
    await session.flush()
    return Seeded(tenant.id, user.id, conversation.id, run.id)


async def rows_per_tenant(sessionmaker: SessionMaker, tenant_id: uuid.UUID) -> dict[str, int]:
    """For every table that names a tenant: how many of its rows name this one."""
    counts = {}
    async with sessionmaker() as session:
        for table in tenant_tables():
            query = select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            counts[table.name] = int(await session.scalar(query) or 0)
    return counts
