"""Every call Switchboard makes to Stripe, through the official library, each idempotent.

Idempotency keys come from our own row ids (and a version for updates), so a task retried
after a timeout or a worker crash repeats the same request and Stripe answers it once. The
library's own retries are off: Celery retries the task, with the same keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from stripe.params import SubscriptionCreateParamsItem, SubscriptionUpdateParamsItem

from switchboard.billing.errors import BillingNotConfiguredError, PermanentStripeError
from switchboard.billing.settings import StripeSettings

# Failures worth retrying with the same idempotency key: the request may not have happened.
TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


@dataclass(frozen=True)
class SubscriptionState:
    stripe_id: str
    item_id: str | None
    status: str
    seats: int
    cancel_at_period_end: bool
    current_period_start: datetime | None
    current_period_end: datetime | None


class StripeGateway:
    def __init__(self, settings: StripeSettings) -> None:
        if settings.api_key is None:
            raise BillingNotConfiguredError("STRIPE_API_KEY is not set.")
        base = str(settings.api_base).rstrip("/") if settings.api_base is not None else None
        self._client = stripe.StripeClient(
            settings.api_key.get_secret_value(),
            base_addresses={"api": base} if base else None,
            max_network_retries=0,
            http_client=stripe.HTTPXClient(timeout=settings.timeout_seconds),
        )
        self._meter_event_name = settings.meter_event_name

    async def create_customer(self, tenant_id: uuid.UUID, name: str) -> str:
        customer = await _call(
            self._client.v1.customers.create_async(
                params={"name": name, "metadata": {"tenant_id": str(tenant_id)}},
                options={"idempotency_key": f"customer-{tenant_id}"},
            )
        )
        return str(customer.id)

    async def create_subscription(
        self,
        subscription_id: uuid.UUID,
        *,
        customer_id: str,
        seat_price: str,
        usage_price: str | None,
        seats: int,
        cancel_at_period_end: bool,
    ) -> SubscriptionState:
        items: list[SubscriptionCreateParamsItem] = [{"price": seat_price, "quantity": seats}]
        if usage_price is not None:
            items.append({"price": usage_price})
        created = await _call(
            self._client.v1.subscriptions.create_async(
                params={
                    "customer": customer_id,
                    "items": items,
                    "cancel_at_period_end": cancel_at_period_end,
                    "metadata": {"subscription_id": str(subscription_id)},
                },
                options={"idempotency_key": f"subscription-{subscription_id}-create"},
            )
        )
        return subscription_state(created)

    async def update_subscription(
        self,
        stripe_id: str,
        *,
        item_id: str | None,
        seat_price: str,
        seats: int,
        cancel_at_period_end: bool,
        idempotency_key: str,
    ) -> SubscriptionState:
        item: SubscriptionUpdateParamsItem = {"price": seat_price, "quantity": seats}
        if item_id is not None:
            item["id"] = item_id
        updated = await _call(
            self._client.v1.subscriptions.update_async(
                stripe_id,
                params={
                    "items": [item],
                    "cancel_at_period_end": cancel_at_period_end,
                    "proration_behavior": "create_prorations",
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return subscription_state(updated)

    async def report_tokens(
        self, identifier: str, *, customer_id: str, tokens: int, at: datetime
    ) -> bool:
        """One meter event; False if Stripe already had one with this identifier."""
        try:
            await _call(
                self._client.v1.billing.meter_events.create_async(
                    params={
                        "event_name": self._meter_event_name,
                        "identifier": identifier,
                        "payload": {"stripe_customer_id": customer_id, "value": str(tokens)},
                        "timestamp": int(at.timestamp()),
                    },
                    options={"idempotency_key": identifier},
                )
            )
        except PermanentStripeError as exc:
            # Stripe documents no code for this refusal: it is a 400 on the identifier.
            if exc.status == 400 and exc.param == "identifier":
                return False  # sent by an earlier attempt whose answer was lost
            raise
        return True


async def _call(request: Any) -> Any:
    try:
        return await request
    except TRANSIENT:
        raise
    except stripe.StripeError as exc:
        raise PermanentStripeError(
            str(exc.user_message or exc),
            status=exc.http_status,
            code=exc.code,
            param=getattr(exc, "param", None),
        ) from exc


def subscription_state(obj: Any) -> SubscriptionState:
    """Our view of a Stripe subscription object (a library object or a webhook's dict)."""
    data = obj if isinstance(obj, dict) else obj.to_dict()
    items = (data.get("items") or {}).get("data") or []
    seat = items[0] if items else {}
    start = data.get("current_period_start") or seat.get("current_period_start")
    end = data.get("current_period_end") or seat.get("current_period_end")
    return SubscriptionState(
        stripe_id=str(data["id"]),
        item_id=seat.get("id"),
        status=str(data.get("status", "incomplete")),
        seats=int(seat.get("quantity") or 1),
        cancel_at_period_end=bool(data.get("cancel_at_period_end")),
        current_period_start=_moment(start),
        current_period_end=_moment(end),
    )


def _moment(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None
