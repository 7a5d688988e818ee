"""Subscriptions as the tenant asks for them, plans and usage, all read from our own tables.

A command writes the intent and buffers ``billing.subscriptions.sync``; the task talks to
Stripe after the commit. Nothing here calls Stripe.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.errors import (
    PlanNotFoundError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
)
from switchboard.billing.periods import period_of
from switchboard.billing.schemas import (
    PlanRead,
    SubscriptionChange,
    SubscriptionRead,
    SubscriptionStart,
    UsageRead,
)
from switchboard.kit.jobs import JobBuffer
from switchboard.models import Plan, Subscription, UsageRecord
from switchboard.models.billing import ENDED_STATUSES

log = structlog.get_logger("switchboard.billing")

SYNC_TASK = "billing.subscriptions.sync"


@dataclass
class BillingService:
    session: AsyncSession

    async def plans(self) -> list[PlanRead]:
        rows = await self.session.scalars(
            select(Plan).where(Plan.active).order_by(Plan.seat_price_cents, Plan.code)
        )
        return [PlanRead.model_validate(plan) for plan in rows]

    async def subscription(self, tenant_id: uuid.UUID) -> SubscriptionRead:
        return subscription_read(await self._live(tenant_id))

    async def start(
        self, tenant_id: uuid.UUID, request: SubscriptionStart, jobs: JobBuffer
    ) -> SubscriptionRead:
        await self._plan(request.plan_code)
        if await self._find_live(tenant_id) is not None:
            raise SubscriptionExistsError("The tenant already has a subscription; change it.")
        subscription = Subscription(
            tenant_id=tenant_id, plan_code=request.plan_code, seats=request.seats
        )
        self.session.add(subscription)
        await self.session.flush()
        jobs.enqueue(SYNC_TASK, str(subscription.id))
        log.info("billing.subscription_requested", subscription_id=str(subscription.id))
        return subscription_read(subscription)

    async def change(
        self, tenant_id: uuid.UUID, request: SubscriptionChange, jobs: JobBuffer
    ) -> SubscriptionRead:
        subscription = await self._live(tenant_id, lock=True)
        if request.plan_code is not None:
            await self._plan(request.plan_code)
            subscription.plan_code = request.plan_code
        if request.seats is not None:
            subscription.seats = request.seats
        return await self._resync(subscription, jobs)

    async def cancel(self, tenant_id: uuid.UUID, jobs: JobBuffer) -> SubscriptionRead:
        subscription = await self._live(tenant_id, lock=True)
        subscription.cancel_at_period_end = True
        return await self._resync(subscription, jobs)

    async def usage(self, tenant_id: uuid.UUID, at: datetime | None = None) -> UsageRead:
        start, end = period_of(at or datetime.now(UTC))
        row = (
            await self.session.execute(
                select(
                    func.coalesce(func.sum(UsageRecord.input_tokens), 0),
                    func.coalesce(func.sum(UsageRecord.output_tokens), 0),
                    func.count(),
                    func.coalesce(func.sum(UsageRecord.reported_quantity), 0),
                ).where(UsageRecord.tenant_id == tenant_id, UsageRecord.period_start == start)
            )
        ).one()
        return UsageRead(
            period_start=start,
            period_end=end,
            input_tokens=row[0],
            output_tokens=row[1],
            runs=row[2],
            reported_quantity=row[3],
        )

    async def _resync(self, subscription: Subscription, jobs: JobBuffer) -> SubscriptionRead:
        subscription.sync_version += 1
        subscription.updated_at = datetime.now(UTC)
        await self.session.flush()
        jobs.enqueue(SYNC_TASK, str(subscription.id))
        log.info("billing.subscription_changed", subscription_id=str(subscription.id))
        return subscription_read(subscription)

    async def _plan(self, code: str) -> Plan:
        plan = await self.session.get(Plan, code)
        if plan is None or not plan.active:
            raise PlanNotFoundError(f"There is no plan {code!r}.")
        return plan

    async def _find_live(self, tenant_id: uuid.UUID, *, lock: bool = False) -> Subscription | None:
        query = select(Subscription).where(
            Subscription.tenant_id == tenant_id, Subscription.status.not_in(ENDED_STATUSES)
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.scalars(query)).one_or_none()

    async def _live(self, tenant_id: uuid.UUID, *, lock: bool = False) -> Subscription:
        subscription = await self._find_live(tenant_id, lock=lock)
        if subscription is None:
            raise SubscriptionNotFoundError("The tenant has no subscription.")
        return subscription


def subscription_read(subscription: Subscription) -> SubscriptionRead:
    return SubscriptionRead(
        plan_code=subscription.plan_code,
        status=subscription.status,
        seats=subscription.seats,
        current_period_end=subscription.current_period_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
    )
