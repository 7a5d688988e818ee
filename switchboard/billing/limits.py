"""Each plan's limits, as operators set them (`switchboard billing limits`).

A limit applies to every tenant on the plan; ``None`` is unlimited. Like every request
service these take the caller's session and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.errors import InvalidLimitError, PlanNotFoundError
from switchboard.billing.repository import BillingRepository
from switchboard.billing.schemas import PlanLimits
from switchboard.billing.service import plan_limits
from switchboard.models import Plan

log = structlog.get_logger("switchboard.billing")

# The plan's limit columns and the largest value each holds.
LIMITS: dict[str, int] = {
    "max_seats": 2**31 - 1,
    "runs_per_minute": 2**31 - 1,
    "concurrent_runs": 2**31 - 1,
    "monthly_tokens": 2**63 - 1,
    "open_streams_per_user": 2**31 - 1,
}


@dataclass(frozen=True)
class PlanLimitsView:
    code: str
    name: str
    active: bool
    limits: PlanLimits


async def plans_with_limits(session: AsyncSession) -> list[PlanLimitsView]:
    """Every plan, the inactive ones too, with its limits; by code."""
    plans = sorted(await BillingRepository(session).plans(), key=lambda plan: plan.code)
    return [_view(plan) for plan in plans]


async def set_plan_limits(
    session: AsyncSession, code: str, changes: Mapping[str, int | None]
) -> PlanLimitsView:
    """Sets the given limits (by column name; ``None`` is unlimited) of the plan ``code``
    and leaves the others as they are."""
    if not changes:
        raise InvalidLimitError("Give at least one limit to change.")
    for name, value in changes.items():
        if name not in LIMITS:
            raise InvalidLimitError(f"There is no limit {name!r}; limits: {', '.join(LIMITS)}.")
        if value is not None and not 0 <= value <= LIMITS[name]:
            raise InvalidLimitError(
                f"{name} must be between 0 and {LIMITS[name]}, or unlimited; got {value}."
            )
    repo = BillingRepository(session)
    plan = await repo.plan(code)
    if plan is None:
        raise PlanNotFoundError(f"There is no plan {code!r}.")
    before = {name: getattr(plan, name) for name in changes}
    for name, value in changes.items():
        setattr(plan, name, value)
    await repo.save()
    log.info("billing.plan_limits_changed", plan=code, before=before, after=dict(changes))
    return _view(plan)


def _view(plan: Plan) -> PlanLimitsView:
    return PlanLimitsView(plan.code, plan.name, plan.active, plan_limits(plan))
