from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from switchboard.kit.text import InputModel


class PlanLimits(BaseModel):
    """What a tenant on a plan may use; ``None`` is unlimited."""

    seats: int | None
    runs_per_minute: int | None
    concurrent_runs: int | None
    monthly_tokens: int | None
    open_streams_per_user: int | None


# An example of the OpenAPI document (/docs, /redoc): the built-in Team plan.
_TEAM_LIMITS: JsonDict = {
    "seats": 50,
    "runs_per_minute": 300,
    "concurrent_runs": 50,
    "monthly_tokens": None,
    "open_streams_per_user": 20,
}


class PlanRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "code": "team",
                    "name": "Team",
                    "seat_price_cents": 2500,
                    "included_tokens": 5_000_000,
                    "limits": _TEAM_LIMITS,
                }
            ]
        },
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plan_code": "team",
                    "status": "active",
                    "seats": 12,
                    "current_period_end": "2027-01-03T09:30:00Z",
                    "cancel_at_period_end": False,
                }
            ]
        }
    )

    plan_code: str
    status: str
    seats: int
    current_period_end: datetime | None
    cancel_at_period_end: bool


class SubscriptionStart(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"plan_code": "team", "seats": 12}]})

    plan_code: str = Field(min_length=1, max_length=32)
    # Without it, the subscription pays for the seats in use (members and pending invitations).
    seats: int | None = Field(None, ge=1, le=10_000)


class SubscriptionChange(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"plan_code": "business"}, {"seats": 20}]}
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "period_start": "2026-12-01T00:00:00Z",
                    "period_end": "2027-01-01T00:00:00Z",
                    "input_tokens": 182_340,
                    "output_tokens": 41_210,
                    "cached_input_tokens": 60_000,
                    "runs": 96,
                    "reported_quantity": 220_000,
                    "limits": _TEAM_LIMITS,
                    "remaining": {"monthly_tokens": None, "runs_this_minute": 298},
                }
            ]
        }
    )

    limits: PlanLimits
    remaining: UsageRemaining
