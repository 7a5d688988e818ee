"""Billing settings: ``STRIPE_*`` (the Stripe account) and ``BILLING_*`` (our metering)."""

from __future__ import annotations

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, field_validator


class PlanPrices(BaseModel):
    seat: str = Field(description="Stripe price id of one seat per period.")
    usage: str | None = Field(None, description="Stripe metered price id of the tokens meter.")


class StripeSettings(BaseModel):
    api_key: SecretStr | None = Field(
        None, description="Stripe secret key; without one, billing jobs fail and say so."
    )
    api_base: AnyHttpUrl | None = Field(
        None, description="Stripe API address; unset for Stripe itself (tests use a local one)."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Webhook signing secret (whsec_...); unset disables the endpoint (404)."
    )
    webhook_tolerance_seconds: int = Field(
        300, ge=1, description="Oldest webhook signature timestamp accepted."
    )
    meter_event_name: str = Field(
        "switchboard_tokens", min_length=1, description="Event name of the tokens meter."
    )
    timeout_seconds: float = Field(20, gt=0, description="Timeout of one Stripe API call.")

    @field_validator("api_key", "api_base", "webhook_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class BillingSettings(BaseModel):
    plan_prices: dict[str, PlanPrices] = Field(
        default_factory=dict,
        description='Stripe prices per plan code, JSON: {"team": {"seat": "price_...",'
        ' "usage": "price_..."}}; applied by `switchboard billing sync-plans`.',
    )
    report_seconds: float = Field(60, gt=0, description="How often beat reports usage.")
    report_batch: int = Field(
        200, ge=1, le=10_000, description="Most usage records folded into one report."
    )
    report_max_retries: int = Field(
        8, ge=0, description="Retries of a failed report task, with exponential backoff."
    )
    webhook_resend_seconds: float = Field(
        300,
        gt=0,
        description="How often beat re-enqueues webhook events stored but not processed for"
        " that long.",
    )
    subscription_resend_seconds: float = Field(
        600,
        gt=0,
        description="How often beat re-enqueues subscription changes not yet synced to Stripe"
        " after that long.",
    )
    webhook_max_attempts: int = Field(
        20, ge=1, description="Failed processing attempts after which an event is left alone."
    )
