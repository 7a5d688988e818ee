"""Billing: plans, the tenant's subscription and usage, Stripe's webhooks.

Every read answers from our tables; commands record the intent and enqueue the Stripe call.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from api.deps import AppSettings, Billing, CurrentPrincipal, RequireMember, UoW
from api.errors import problem_responses
from switchboard.auth.errors import ForbiddenError, InvalidTokenError
from switchboard.auth.principal import Principal
from switchboard.billing import webhooks
from switchboard.billing.errors import (
    InvalidWebhookError,
    PlanNotFoundError,
    SeatsInUseError,
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    TooManySeatsError,
    WebhookDisabledError,
)
from switchboard.billing.schemas import (
    PlanRead,
    SubscriptionChange,
    SubscriptionRead,
    SubscriptionStart,
    UsageLimitsRead,
)
from switchboard.billing.service import BILLING_MANAGER_ROLES
from switchboard.kit.text import SafeStr

router = APIRouter(prefix="/api/v1/billing", tags=["billing"], responses=problem_responses(503))

# Roles are read from Postgres at each request, not trusted from the token.
BillingManager = Annotated[Principal, Depends(RequireMember(*BILLING_MANAGER_ROLES))]
BillingMember = Annotated[Principal, Depends(RequireMember())]


@router.get("/plans", response_model=list[PlanRead], responses=problem_responses(InvalidTokenError))
async def plans(_: CurrentPrincipal, billing: Billing) -> list[PlanRead]:
    """The plans on offer."""
    return await billing.plans()


@router.get(
    "/subscription",
    response_model=SubscriptionRead,
    responses=problem_responses(InvalidTokenError, SubscriptionNotFoundError),
)
async def subscription(principal: BillingMember, billing: Billing) -> SubscriptionRead:
    """The tenant's current subscription; 404 if it has none."""
    return await billing.subscription(principal.tenant_id)


@router.post(
    "/subscription",
    status_code=201,
    response_model=SubscriptionRead,
    responses=problem_responses(
        InvalidTokenError,
        ForbiddenError,
        SubscriptionExistsError,
        SeatsInUseError,
        413,
        422,
        PlanNotFoundError,
        TooManySeatsError,
    ),
)
async def start(
    body: SubscriptionStart, principal: BillingManager, billing: Billing, uow: UoW
) -> SubscriptionRead:
    """Subscribe the tenant (status `pending` until Stripe confirms). Owner, admin, billing."""
    return await billing.start(principal.tenant_id, body, uow.jobs)


@router.patch(
    "/subscription",
    response_model=SubscriptionRead,
    responses=problem_responses(
        InvalidTokenError,
        ForbiddenError,
        SubscriptionNotFoundError,
        SeatsInUseError,
        413,
        422,
        PlanNotFoundError,
        TooManySeatsError,
    ),
)
async def change(
    body: SubscriptionChange, principal: BillingManager, billing: Billing, uow: UoW
) -> SubscriptionRead:
    """Change the plan, the seats or both. Owner, admin, billing."""
    return await billing.change(principal.tenant_id, body, uow.jobs)


@router.delete(
    "/subscription",
    response_model=SubscriptionRead,
    responses=problem_responses(InvalidTokenError, ForbiddenError, SubscriptionNotFoundError),
)
async def cancel(principal: BillingManager, billing: Billing, uow: UoW) -> SubscriptionRead:
    """Cancel at the end of the current period. Owner, admin, billing."""
    return await billing.cancel(principal.tenant_id, uow.jobs)


@router.get(
    "/usage", response_model=UsageLimitsRead, responses=problem_responses(InvalidTokenError)
)
async def usage(
    principal: BillingMember,
    billing: Billing,
    period: Annotated[SafeStr, Query(pattern="^current$")] = "current",
) -> UsageLimitsRead:
    """Tokens used by the tenant's runs this calendar month (UTC), and how many were reported;
    the plan's `limits`, and what `remaining` of them now (`monthly_tokens`,
    `runs_this_minute`; null when unlimited)."""
    return await billing.usage_and_limits(principal.tenant_id)


@router.post(
    "/webhooks/stripe",
    response_class=Response,
    responses={
        200: {"description": "Stored, or already stored; processed by a worker."},
        **problem_responses(InvalidWebhookError, WebhookDisabledError, 413),
    },
)
async def stripe_webhook(
    request: Request,
    uow: UoW,
    settings: AppSettings,
    stripe_signature: Annotated[SafeStr | None, Header()] = None,
) -> Response:
    """Stripe's events: verified against `STRIPE_WEBHOOK_SECRET`, stored once, processed by a
    worker. 404 when no secret is configured."""
    await webhooks.receive(
        uow.session, uow.jobs, await request.body(), stripe_signature, settings.stripe
    )
    return Response(status_code=200)
