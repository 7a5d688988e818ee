"""SQL of outbound webhooks: endpoints, the outbox, deliveries and the attempt log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.kit.pagination import CreatedKey
from switchboard.models import (
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from switchboard.webhooks.jobs import DeliveryRef

UNFINISHED = ("pending", "queued", "sending")


@dataclass(frozen=True)
class ClaimedDelivery:
    id: uuid.UUID
    tenant_id: uuid.UUID
    attempt: int
    endpoint_id: uuid.UUID
    url: str
    secret: bytes
    previous_secret: bytes | None
    previous_secret_expires_at: datetime | None
    event_id: uuid.UUID
    event_type: str
    data: dict[str, Any]
    event_created_at: datetime


@dataclass(frozen=True)
class AttemptRow:
    attempt: WebhookAttempt
    event_id: uuid.UUID
    event_type: str


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Endpoints

    async def lock_tenant(self, tenant_id: uuid.UUID) -> None:
        """Creations of one tenant take turns, so the endpoint limit holds under concurrency."""
        await self.session.execute(
            select(Tenant.id).where(Tenant.id == tenant_id).with_for_update()
        )

    async def count_endpoints(self, tenant_id: uuid.UUID) -> int:
        query = select(func.count()).where(WebhookEndpoint.tenant_id == tenant_id)
        return int(await self.session.scalar(query) or 0)

    def add(self, row: WebhookEndpoint | WebhookEvent | WebhookDelivery) -> None:
        self.session.add(row)

    async def flush(self) -> None:
        await self.session.flush()

    async def endpoints(self, tenant_id: uuid.UUID) -> list[WebhookEndpoint]:
        query = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.tenant_id == tenant_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return list(await self.session.scalars(query))

    async def endpoint(
        self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, *, lock: bool = False
    ) -> WebhookEndpoint | None:
        query = select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.scalars(query)).one_or_none()

    async def delete_endpoint(self, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> bool:
        deleted = await self.session.execute(
            delete(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id)
            .returning(WebhookEndpoint.id)
        )
        return deleted.first() is not None

    # The outbox

    async def subscribers(self, tenant_id: uuid.UUID, event_type: str) -> list[uuid.UUID]:
        query = select(WebhookEndpoint.id).where(
            WebhookEndpoint.tenant_id == tenant_id,
            WebhookEndpoint.enabled,
            WebhookEndpoint.events.any_() == event_type,
        )
        return list(await self.session.scalars(query))

    async def add_deliveries(
        self,
        tenant_id: uuid.UUID,
        event_id: uuid.UUID,
        endpoint_ids: Sequence[uuid.UUID],
        *,
        now: datetime,
        lease_until: datetime,
    ) -> list[DeliveryRef]:
        """New deliveries, each due now and marked queued: their jobs go out after commit."""
        refs = [DeliveryRef(uuid.uuid4(), endpoint_id) for endpoint_id in endpoint_ids]
        rows = [
            {
                "id": ref.id,
                "tenant_id": tenant_id,
                "endpoint_id": ref.endpoint_id,
                "event_id": event_id,
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "lease_until": lease_until,
            }
            for ref in refs
        ]
        await self.session.execute(insert(WebhookDelivery), rows)
        return refs

    # Delivery

    async def claim(
        self, delivery_id: uuid.UUID, *, now: datetime, lease_until: datetime
    ) -> ClaimedDelivery | None:
        """Takes the delivery for one attempt if it is due (or its last holder's lease ran
        out); None if it is not, or not anymore."""
        due = or_(
            and_(
                WebhookDelivery.status.in_(("pending", "queued")),
                WebhookDelivery.next_attempt_at <= now,
            ),
            and_(WebhookDelivery.status == "sending", WebhookDelivery.lease_until < now),
        )
        claimed = await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, due)
            .values(
                status="sending", attempts=WebhookDelivery.attempts + 1, lease_until=lease_until
            )
            .returning(
                WebhookDelivery.attempts,
                WebhookDelivery.endpoint_id,
                WebhookDelivery.event_id,
            )
        )
        row = claimed.first()
        if row is None:
            return None
        joined = (
            await self.session.execute(
                select(WebhookEndpoint, WebhookEvent)
                .join(WebhookEvent, WebhookEvent.id == row.event_id)
                .where(WebhookEndpoint.id == row.endpoint_id)
            )
        ).one()
        endpoint, event = joined.tuple()
        if not endpoint.enabled:
            await self.finish(delivery_id, "failed", now)
            return None
        return ClaimedDelivery(
            id=delivery_id,
            tenant_id=endpoint.tenant_id,
            attempt=row.attempts,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            secret=endpoint.secret,
            previous_secret=endpoint.previous_secret,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
            event_id=event.id,
            event_type=event.type,
            data=event.data,
            event_created_at=event.created_at,
        )

    async def postpone(self, delivery_id: uuid.UUID, *, at: datetime) -> None:
        """Puts a queued delivery back to wait in Postgres until ``at``, its job chain ended."""
        await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == "queued")
            .values(status="pending", next_attempt_at=at, lease_until=None)
        )

    def log_attempt(self, attempt: WebhookAttempt) -> None:
        self.session.add(attempt)

    async def succeeded(self, claimed: ClaimedDelivery, now: datetime) -> bool:
        """True if the attempt was still the delivery's latest when it ended."""
        ended = await self._settle(claimed, status="succeeded", now=now, finished=True)
        await self.session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == claimed.endpoint_id,
                WebhookEndpoint.failing_since.is_not(None),
            )
            .values(failing_since=None)
        )
        return ended

    async def retry(
        self, claimed: ClaimedDelivery, *, status: str, at: datetime, lease_until: datetime | None
    ) -> bool:
        return await self._settle(
            claimed, status=status, next_attempt_at=at, lease_until=lease_until
        )

    async def give_up(self, claimed: ClaimedDelivery, now: datetime) -> bool:
        return await self._settle(claimed, status="failed", now=now, finished=True)

    async def _settle(
        self,
        claimed: ClaimedDelivery,
        *,
        status: str,
        now: datetime | None = None,
        finished: bool = False,
        next_attempt_at: datetime | None = None,
        lease_until: datetime | None = None,
    ) -> bool:
        settled = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claimed.id,
                WebhookDelivery.status == "sending",
                WebhookDelivery.attempts == claimed.attempt,
            )
            .values(
                status=status,
                next_attempt_at=next_attempt_at,
                lease_until=lease_until,
                finished_at=now if finished else None,
            )
            .returning(WebhookDelivery.id)
        )
        return settled.first() is not None

    async def finish(self, delivery_id: uuid.UUID, status: str, now: datetime) -> None:
        await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(status=status, finished_at=now, next_attempt_at=None, lease_until=None)
        )

    async def mark_failing(self, endpoint_id: uuid.UUID, now: datetime) -> datetime | None:
        """Since when the endpoint has been failing (now, if it was not); None if it is
        disabled already."""
        return await self.session.scalar(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled)
            .values(failing_since=func.coalesce(WebhookEndpoint.failing_since, now))
            .returning(WebhookEndpoint.failing_since)
        )

    async def disable_failing(self, endpoint_id: uuid.UUID, now: datetime) -> bool:
        """Disables the endpoint and fails its unfinished deliveries; False if another
        attempt disabled it first."""
        disabled = await self.session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled)
            .values(enabled=False, disabled_reason="failing", updated_at=now)
            .returning(WebhookEndpoint.id)
        )
        if disabled.first() is None:
            return False
        await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.status.in_(UNFINISHED),
            )
            .values(status="failed", finished_at=now, next_attempt_at=None, lease_until=None)
        )
        return True

    async def dispatch_due(
        self, *, now: datetime, lease_until: datetime, limit: int, per_endpoint: int
    ) -> list[DeliveryRef]:
        """Marks queued, and returns, the deliveries whose time has come: pending ones due,
        and queued or sending ones whose lease ran out (a lost job, a worker killed). At most
        ``per_endpoint`` of one endpoint, the attempts it may have in flight: a slow endpoint's
        backlog stays in Postgres instead of circling through the broker."""
        is_due = and_(
            WebhookDelivery.status.in_(UNFINISHED),
            or_(
                and_(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now),
                and_(WebhookDelivery.status != "pending", WebhookDelivery.lease_until < now),
            ),
        )
        ranked = (
            select(
                WebhookDelivery.id,
                WebhookDelivery.next_attempt_at,
                func.row_number()
                .over(
                    partition_by=WebhookDelivery.endpoint_id,
                    order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id),
                )
                .label("rank"),
            )
            .where(is_due)
            .subquery()
        )
        due = (
            select(ranked.c.id)
            .where(ranked.c.rank <= per_endpoint)
            .order_by(ranked.c.next_attempt_at)
            .limit(limit)
            .scalar_subquery()
        )
        # A sending delivery whose lease ran out keeps its attempt count: the attempt that
        # was cut off counts, so a receiver that kills workers cannot earn endless tries.
        # Two dispatchers at once may both mark a row: its second job finds it taken.
        marked = await self.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due), is_due)
            .values(
                status="queued",
                next_attempt_at=func.least(WebhookDelivery.next_attempt_at, now),
                lease_until=lease_until,
            )
            .returning(WebhookDelivery.id, WebhookDelivery.endpoint_id)
        )
        return [DeliveryRef(row.id, row.endpoint_id) for row in marked]

    async def count_retries_pending(self) -> int:
        query = select(func.count()).where(
            WebhookDelivery.status.in_(UNFINISHED), WebhookDelivery.attempts > 0
        )
        return int(await self.session.scalar(query) or 0)

    async def count_disabled(self) -> int:
        query = select(func.count()).where(WebhookEndpoint.disabled_reason == "failing")
        return int(await self.session.scalar(query) or 0)

    # The log

    async def attempts(
        self,
        tenant_id: uuid.UUID,
        endpoint_id: uuid.UUID,
        *,
        before: CreatedKey | None,
        limit: int,
    ) -> list[AttemptRow]:
        """The endpoint's attempts, newest first, from before ``before``."""
        query = (
            select(WebhookAttempt, WebhookEvent.id, WebhookEvent.type)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookAttempt.endpoint_id == endpoint_id, WebhookAttempt.tenant_id == tenant_id)
            .order_by(WebhookAttempt.created_at.desc(), WebhookAttempt.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(
                tuple_(WebhookAttempt.created_at, WebhookAttempt.id) < tuple_(*before)
            )
        rows = await self.session.execute(query)
        return [AttemptRow(attempt, event_id, event_type) for attempt, event_id, event_type in rows]

    async def attempt(self, tenant_id: uuid.UUID, attempt_id: uuid.UUID) -> WebhookAttempt | None:
        query = select(WebhookAttempt).where(
            WebhookAttempt.id == attempt_id, WebhookAttempt.tenant_id == tenant_id
        )
        return (await self.session.scalars(query)).one_or_none()

    async def delivery(self, delivery_id: uuid.UUID) -> WebhookDelivery | None:
        return await self.session.get(WebhookDelivery, delivery_id)
