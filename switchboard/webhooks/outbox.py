"""The outbox: an event is written in the transaction of the change it reports, with one
delivery per enabled endpoint subscribed to its type, so a rollback or a crash can neither
lose an event nor announce a change that never happened. Its producer sends the deliveries'
jobs (``deliver_jobs``) after the commit; should that send be lost, the dispatcher finds the
deliveries when their lease runs out."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.models import WebhookEvent
from switchboard.webhooks.jobs import DeliveryRef
from switchboard.webhooks.repository import WebhookRepository
from switchboard.webhooks.schemas import WebhookEventType

# How long a delivery whose job was sent may wait for a worker before the dispatcher sends
# it again (the second job finds it taken, or finishes what the first never started).
QUEUED_LEASE = timedelta(minutes=5)


async def subscribers(
    session: AsyncSession, tenant_id: uuid.UUID, event_type: WebhookEventType
) -> list[uuid.UUID]:
    """The tenant's enabled endpoints subscribed to ``event_type``."""
    return await WebhookRepository(session).subscribers(tenant_id, event_type)


async def record_event(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    event_type: WebhookEventType,
    data: Mapping[str, Any],
    *,
    only: uuid.UUID | None = None,
    endpoints: Sequence[uuid.UUID] | None = None,
) -> list[DeliveryRef]:
    """Writes the event for the tenant's endpoints subscribed to it (just ``only``, whatever
    it subscribes to, for a test event; or ``endpoints``, the subscribers the caller read);
    returns the new deliveries' ids. No subscriber, no event: the common case costs one
    indexed read."""
    repo = WebhookRepository(session)
    if endpoints is None:
        endpoints = (
            [only] if only is not None else await subscribers(session, tenant_id, event_type)
        )
    if not endpoints:
        return []
    now = datetime.now(UTC)
    event = WebhookEvent(
        id=uuid.uuid4(), tenant_id=tenant_id, type=event_type.value, data=dict(data), created_at=now
    )
    repo.add(event)
    await repo.flush()
    return await repo.add_deliveries(
        tenant_id, event.id, endpoints, now=now, lease_until=now + QUEUED_LEASE
    )
