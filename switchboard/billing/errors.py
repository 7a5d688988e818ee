from __future__ import annotations

from switchboard.kit.errors import AppError, ConflictError, NotFoundError


class BillingNotConfiguredError(Exception):
    """Stripe calls are impossible without an API key."""


class PermanentStripeError(Exception):
    """Stripe refused the request; retrying it unchanged will not help."""

    def __init__(
        self, message: str, *, status: int | None, code: str | None, param: str | None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.param = param


class PlanNotFoundError(AppError):
    status = 422
    code = "billing.unknown_plan"
    title = "Unprocessable content"


class InvalidLimitError(AppError):
    status = 422
    code = "billing.invalid_limit"
    title = "Unprocessable content"


class SubscriptionNotFoundError(NotFoundError):
    code = "billing.no_subscription"


class SubscriptionExistsError(ConflictError):
    code = "billing.subscription_exists"

    def __init__(self) -> None:
        super().__init__("The tenant already has a subscription; change it.")


class SeatsInUseError(ConflictError):
    code = "billing.seats_in_use"


class TooManySeatsError(AppError):
    status = 422
    code = "billing.too_many_seats"
    title = "Unprocessable content"


class QuotaExceededError(AppError):
    """The tenant used its plan's monthly tokens; raised when a chat would start a run."""

    status = 402
    code = "billing.quota_exceeded"
    title = "Payment required"


class WebhookDisabledError(NotFoundError):
    code = "not_found"


class InvalidWebhookError(AppError):
    status = 400
    code = "billing.invalid_webhook"
