"""Subscriptions as the tenant asks for them, plans and usage, all read from our own tables.

A command writes the intent and buffers ``billing.subscriptions.sync``; the task talks to
Stripe after the commit. Nothing here calls Stripe.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.errors import (
    PlanNotFoundError,
    SeatsInUseError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    TooManySeatsError,
)
from switchboard.billing.jobs import SYNC_SUBSCRIPTION
from switchboard.billing.periods import period_of
from switchboard.billing.repository import BillingRepository
from switchboard.billing.schemas import (
    PlanLimits,
    PlanRead,
    SubscriptionChange,
    SubscriptionRead,
    SubscriptionStart,
    TenantPlan,
    UsageLimitsRead,
    UsageRead,
    UsageRemaining,
)
from switchboard.kit.jobs import JobBuffer
from switchboard.models import Plan, Subscription

log = structlog.get_logger("switchboard.billing")

# The plan of every tenant without a live subscription.
FREE_PLAN = "free"

# The roles that may start, change and cancel the tenant's subscription.
BILLING_MANAGER_ROLES = ("owner", "admin", "billing")

# Runs the tenant may still start this minute (None: unlimited), as the runs domain's
# admission counts them; given to the service by the API, since billing imports no runs.
RunsThisMinute = Callable[[uuid.UUID, PlanLimits], Awaitable[int | None]]


class BillingService:
    """Requests' billing: takes the request's session (and its job buffer where a command
    enqueues); never commits."""

    def __init__(
        self, session: AsyncSession, *, runs_this_minute: RunsThisMinute | None = None
    ) -> None:
        self.session = session
        self.repo = BillingRepository(session)
        self.runs_this_minute = runs_this_minute

    async def plans(self) -> list[PlanRead]:
        return [plan_read(plan) for plan in await self.repo.active_plans()]

    async def tenant_plan(self, tenant_id: uuid.UUID) -> TenantPlan:
        subscription = await self.repo.live_subscription(tenant_id)
        code = subscription.plan_code if subscription is not None else FREE_PLAN
        plan = await self.repo.plan(code)
        if plan is None:
            raise PlanNotFoundError(f"The plan {code!r} does not exist.")
        limits = plan_limits(plan)
        if subscription is not None:
            limits = limits.model_copy(update={"seats": subscription.seats})
        return TenantPlan(plan_code=code, limits=limits)

    async def free_seats(self, tenant_id: uuid.UUID) -> int | None:
        """Seats the tenant's plan leaves free (None: unlimited). Counts with the tenant's row
        locked until the request ends, so a seat taken now is seen by the next caller."""
        in_use = await self.repo.seats_in_use(tenant_id, datetime.now(UTC))
        seats = (await self.tenant_plan(tenant_id)).limits.seats
        return None if seats is None else seats - in_use

    async def subscription(self, tenant_id: uuid.UUID) -> SubscriptionRead:
        return subscription_read(await self._live(tenant_id))

    async def start(
        self, tenant_id: uuid.UUID, request: SubscriptionStart, jobs: JobBuffer
    ) -> SubscriptionRead:
        plan = await self._plan(request.plan_code)
        if await self.repo.live_subscription(tenant_id) is not None:
            raise SubscriptionExistsError()
        seats = await self._check_seats(tenant_id, plan, request.seats)
        subscription = Subscription(tenant_id=tenant_id, plan_code=plan.code, seats=seats)
        if not await self.repo.add_subscription(subscription):
            raise SubscriptionExistsError()
        jobs.enqueue(SYNC_SUBSCRIPTION, str(subscription.id))
        log.info("billing.subscription_requested", subscription_id=str(subscription.id))
        return subscription_read(subscription)

    async def change(
        self, tenant_id: uuid.UUID, request: SubscriptionChange, jobs: JobBuffer
    ) -> SubscriptionRead:
        subscription = await self._live(tenant_id, lock=True)
        if request.plan_code is not None:
            plan = await self._plan(request.plan_code)
        else:  # the plan it is on, offered or not
            current = await self.repo.plan(subscription.plan_code)
            assert current is not None  # a foreign key
            plan = current
        seats = request.seats if request.seats is not None else subscription.seats
        subscription.seats = await self._check_seats(tenant_id, plan, seats)
        subscription.plan_code = plan.code
        return await self._resync(subscription, jobs)

    async def cancel(self, tenant_id: uuid.UUID, jobs: JobBuffer) -> SubscriptionRead:
        subscription = await self._live(tenant_id, lock=True)
        subscription.cancel_at_period_end = True
        return await self._resync(subscription, jobs)

    async def usage(self, tenant_id: uuid.UUID, at: datetime | None = None) -> UsageRead:
        """The tenant's metered usage in the month of ``at`` (now): what the API answers and
        what the agents' billing tool tells a user."""
        start, end = period_of(at or datetime.now(UTC))
        usage = await self.repo.period_usage(tenant_id, start)
        return UsageRead(
            period_start=start,
            period_end=end,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            runs=usage.runs,
            reported_quantity=usage.reported_quantity,
        )

    async def usage_and_limits(self, tenant_id: uuid.UUID) -> UsageLimitsRead:
        """The month's usage, the plan's limits and what is left: tokens this month, and runs
        this minute as the enforcement counts them (None without a reader of it)."""
        usage = await self.usage(tenant_id)
        limits = (await self.tenant_plan(tenant_id)).limits
        used = usage.input_tokens + usage.output_tokens
        runs = None
        if self.runs_this_minute is not None:
            runs = await self.runs_this_minute(tenant_id, limits)
        return UsageLimitsRead(
            **usage.model_dump(),
            limits=limits,
            remaining=UsageRemaining(
                monthly_tokens=(
                    None if limits.monthly_tokens is None else max(0, limits.monthly_tokens - used)
                ),
                runs_this_minute=runs,
            ),
        )

    async def _resync(self, subscription: Subscription, jobs: JobBuffer) -> SubscriptionRead:
        subscription.sync_version += 1
        subscription.updated_at = datetime.now(UTC)
        await self.repo.save()
        jobs.enqueue(SYNC_SUBSCRIPTION, str(subscription.id))
        log.info("billing.subscription_changed", subscription_id=str(subscription.id))
        return subscription_read(subscription)

    async def _check_seats(self, tenant_id: uuid.UUID, plan: Plan, seats: int | None) -> int:
        """The seats a subscription on ``plan`` pays for: at least those in use (members and
        pending invitations; all of them when ``seats`` is not given), at most the plan's."""
        in_use = await self.repo.seats_in_use(tenant_id, datetime.now(UTC))
        seats = seats if seats is not None else max(1, in_use)
        if plan.max_seats is not None and seats > plan.max_seats:
            raise TooManySeatsError(f"The {plan.name} plan has at most {plan.max_seats} seats.")
        if seats < in_use:
            raise SeatsInUseError(
                f"{in_use} seats are in use (members and pending invitations); remove members"
                f" or revoke invitations before paying for {seats}."
            )
        return seats

    async def _plan(self, code: str) -> Plan:
        plan = await self.repo.plan(code)
        if plan is None or not plan.active:
            raise PlanNotFoundError(f"There is no plan {code!r}.")
        if plan.code == FREE_PLAN:
            raise PlanNotFoundError("The free plan is the plan of a tenant without a subscription.")
        return plan

    async def _live(self, tenant_id: uuid.UUID, *, lock: bool = False) -> Subscription:
        subscription = await self.repo.live_subscription(tenant_id, lock=lock)
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


def plan_limits(plan: Plan) -> PlanLimits:
    return PlanLimits(
        seats=plan.max_seats,
        runs_per_minute=plan.runs_per_minute,
        concurrent_runs=plan.concurrent_runs,
        monthly_tokens=plan.monthly_tokens,
        open_streams_per_user=plan.open_streams_per_user,
    )


def plan_read(plan: Plan) -> PlanRead:
    return PlanRead(
        code=plan.code,
        name=plan.name,
        seat_price_cents=plan.seat_price_cents,
        included_tokens=plan.included_tokens,
        limits=plan_limits(plan),
    )
