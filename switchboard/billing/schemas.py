from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from switchboard.kit.text import InputModel


class PlanLimits(BaseModel):
    """What a tenant on a plan may use; ``None`` is unlimited."""

    seats: int | None
    runs_per_minute: int | None
    concurrent_runs: int | None
    monthly_tokens: int | None
    open_streams_per_user: int | None


class PlanRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    seat_price_cents: int
    included_tokens: int
    limits: PlanLimits


class TenantPlan(BaseModel):
    """The plan a tenant is on (its live subscription's, else ``free``) and its limits, with
    the seats the subscription pays for as the seat limit."""

    plan_code: str
    limits: PlanLimits


class SubscriptionRead(BaseModel):
    plan_code: str
    status: str
    seats: int
    current_period_end: datetime | None
    cancel_at_period_end: bool


class SubscriptionStart(InputModel):
    plan_code: str = Field(min_length=1, max_length=32)
    # Without it, the subscription pays for the seats in use (members and pending invitations).
    seats: int | None = Field(None, ge=1, le=10_000)


class SubscriptionChange(InputModel):
    plan_code: str | None = Field(None, min_length=1, max_length=32)
    seats: int | None = Field(None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _something(self) -> SubscriptionChange:
        if self.plan_code is None and self.seats is None:
            raise ValueError("give plan_code, seats or both")
        return self


class UsageRead(BaseModel):
    period_start: datetime
    period_end: datetime
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int = Field(
        description="Of input_tokens, those the provider read from its prompt cache."
    )
    runs: int
    reported_quantity: int


class UsageRemaining(BaseModel):
    """What the tenant may still use now; ``None`` is unlimited."""

    monthly_tokens: int | None
    runs_this_minute: int | None


class UsageLimitsRead(UsageRead):
    """The month's usage with the plan's limits and what is left of them."""

    limits: PlanLimits
    remaining: UsageRemaining
