"""Plans and their Stripe prices."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.repository import BillingRepository
from switchboard.billing.service import FREE_PLAN
from switchboard.billing.settings import BillingSettings


@dataclass(frozen=True)
class PlanSync:
    updated: list[str]
    unpriced: list[str]
    unknown: list[str]


async def sync_plan_prices(session: AsyncSession, settings: BillingSettings) -> PlanSync:
    """Writes ``BILLING_PLAN_PRICES`` onto the plans; reports plans left without a price
    (free excepted: nobody subscribes to it)."""
    plans = {plan.code: plan for plan in await BillingRepository(session).plans()}
    updated = []
    for code, prices in settings.plan_prices.items():
        plan = plans.get(code)
        if plan is None:
            continue
        if (plan.stripe_seat_price_id, plan.stripe_usage_price_id) != (prices.seat, prices.usage):
            plan.stripe_seat_price_id, plan.stripe_usage_price_id = prices.seat, prices.usage
            updated.append(code)
    return PlanSync(
        updated=updated,
        unpriced=sorted(
            code
            for code, plan in plans.items()
            if plan.active and not plan.stripe_seat_price_id and code != FREE_PLAN
        ),
        unknown=sorted(set(settings.plan_prices) - set(plans)),
    )
