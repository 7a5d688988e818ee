"""The Stripe fake, driven through the official ``stripe`` library over real HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal

import httpx
import pytest
import stripe

from tests.support.stripe_server import (
    DUPLICATE_METER_EVENT_CODE,
    METER_IDENTIFIER_WINDOW_SECONDS,
    PERIOD_SECONDS,
    StripeServer,
    nest_form,
)


@pytest.fixture
def server() -> Iterator[StripeServer]:
    with StripeServer() as fake:
        yield fake


@pytest.fixture
def client(server: StripeServer) -> stripe.StripeClient:
    return server.client()


def customer_and_subscription(
    client: stripe.StripeClient,
) -> tuple[stripe.Customer, stripe.Subscription]:
    customer = client.v1.customers.create({"email": "ada@example.com", "name": "Ada"})
    subscription = client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": "price_pro", "quantity": 2}]}
    )
    return customer, subscription


# --------------------------------------------------------------------- customers, subscriptions


def test_customer_and_subscription_are_created_in_stripe_shape(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create(
        {"email": "ada@example.com", "name": "Ada", "metadata": {"tenant_id": "t-1"}}
    )
    assert customer.id.startswith("cus_")
    assert customer.object == "customer"
    assert (customer.email, customer.name) == ("ada@example.com", "Ada")
    assert customer.metadata is not None
    assert customer.metadata["tenant_id"] == "t-1"

    subscription = client.v1.subscriptions.create(
        {
            "customer": customer.id,
            "items": [{"price": "price_pro", "quantity": 3}, {"price": "price_seats"}],
            "metadata": {"tenant_id": "t-1"},
        }
    )
    assert subscription.id.startswith("sub_")
    assert subscription.object == "subscription"
    assert subscription.customer == customer.id
    assert subscription.status == "active"
    assert subscription.cancel_at_period_end is False
    assert subscription.metadata["tenant_id"] == "t-1"
    first, second = subscription.items.data
    assert first.id.startswith("si_")
    assert (first.price.id, first.quantity) == ("price_pro", 3)
    assert (second.price.id, second.quantity) == ("price_seats", 1)
    # Recent API versions moved the period onto the items; the fake answers both.
    assert first.current_period_end - first.current_period_start == PERIOD_SECONDS
    assert subscription["current_period_start"] == first.current_period_start
    assert subscription["current_period_end"] == first.current_period_end
    assert abs(subscription.created - server.now()) <= 2

    fetched = client.v1.subscriptions.retrieve(subscription.id)
    assert fetched.to_dict() == subscription.to_dict()
    assert server.subscription(subscription.id)["items"]["data"][0]["quantity"] == 3

    request = server.requests_to("POST", "/v1/subscriptions")[0]
    assert request.params["items[0][price]"] == "price_pro"
    assert request.params["items[0][quantity]"] == "3"
    assert request.params["metadata[tenant_id]"] == "t-1"
    assert request.form["items"] == [
        {"price": "price_pro", "quantity": "3"},
        {"price": "price_seats"},
    ]
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    assert request.header("authorization") == "Bearer sk_test_switchboard_fake"
    assert request.status == 200
    assert request.response["id"] == subscription.id


def test_update_changes_the_item_in_place(client: stripe.StripeClient) -> None:
    _, subscription = customer_and_subscription(client)
    item = subscription.items.data[0]

    updated = client.v1.subscriptions.update(
        subscription.id,
        {
            "items": [{"id": item.id, "price": "price_team", "quantity": 5}],
            "proration_behavior": "create_prorations",
            "cancel_at_period_end": True,
            "metadata": {"plan": "team"},
        },
    )

    assert len(updated.items.data) == 1
    assert updated.items.data[0].id == item.id
    assert (updated.items.data[0].price.id, updated.items.data[0].quantity) == ("price_team", 5)
    assert updated.cancel_at_period_end is True
    assert updated.cancel_at == updated.items.data[0].current_period_end
    assert updated.metadata["plan"] == "team"
    assert client.v1.subscriptions.retrieve(subscription.id).to_dict() == updated.to_dict()

    resumed = client.v1.subscriptions.update(subscription.id, {"cancel_at_period_end": False})
    assert resumed.cancel_at_period_end is False
    assert resumed.cancel_at is None


def test_an_item_without_its_id_is_added_not_replaced(client: stripe.StripeClient) -> None:
    _, subscription = customer_and_subscription(client)

    updated = client.v1.subscriptions.update(
        subscription.id, {"items": [{"price": "price_team", "quantity": 1}]}
    )
    assert [i.price.id for i in updated.items.data] == ["price_pro", "price_team"]

    with pytest.raises(stripe.InvalidRequestError) as same_price:
        client.v1.subscriptions.update(subscription.id, {"items": [{"price": "price_pro"}]})
    assert same_price.value.http_status == 400


def test_invalid_updates_change_nothing(server: StripeServer, client: stripe.StripeClient) -> None:
    _, subscription = customer_and_subscription(client)
    before = server.subscription(subscription.id)

    with pytest.raises(stripe.InvalidRequestError) as behaviour:
        client.v1.subscriptions.update(
            subscription.id,
            {"proration_behavior": "sometimes", "metadata": {"x": "y"}},
        )
    assert behaviour.value.param == "proration_behavior"
    with pytest.raises(stripe.InvalidRequestError) as item:
        client.v1.subscriptions.update(
            subscription.id, {"items": [{"id": "si_missing", "quantity": 2}]}
        )
    assert item.value.code == "resource_missing"
    assert server.subscription(subscription.id) == before


def test_metered_prices_refuse_a_quantity(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    server.add_price("price_tokens", usage_type="metered", meter="mtr_tokens")
    customer, _ = customer_and_subscription(client)

    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.subscriptions.create(
            {"customer": customer.id, "items": [{"price": "price_tokens", "quantity": 1}]}
        )
    assert error.value.param == "items[0][quantity]"

    metered = client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": "price_tokens"}]}
    )
    assert metered.items.data[0].quantity is None
    assert metered.items.data[0].price.recurring is not None
    assert metered.items.data[0].price.recurring.usage_type == "metered"


def test_cancel(server: StripeServer, client: stripe.StripeClient) -> None:
    _, subscription = customer_and_subscription(client)

    canceled = client.v1.subscriptions.cancel(subscription.id)

    assert canceled.status == "canceled"
    assert canceled.canceled_at is not None
    assert canceled.ended_at is not None
    assert client.v1.subscriptions.retrieve(subscription.id).status == "canceled"
    assert server.requests_to("DELETE")[0].idempotency_key is None  # the library sends none

    # Like Stripe: canceling again answers "no such subscription", and only metadata changes.
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.subscriptions.cancel(subscription.id)
    assert (again.value.http_status, again.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as update:
        client.v1.subscriptions.update(subscription.id, {"cancel_at_period_end": True})
    assert update.value.http_status == 400
    relabeled = client.v1.subscriptions.update(subscription.id, {"metadata": {"note": "gone"}})
    assert relabeled.metadata["note"] == "gone"


def test_unknown_ids_and_routes(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_missing")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    assert missing.value.request_id is not None
    assert missing.value.request_id.startswith("req_")

    with pytest.raises(stripe.InvalidRequestError) as customer:
        client.v1.subscriptions.create({"customer": "cus_missing", "items": [{"price": "p"}]})
    assert (customer.value.http_status, customer.value.param) == (400, "customer")

    with pytest.raises(stripe.InvalidRequestError) as route:
        client.v1.invoices.retrieve("in_123")
    assert route.value.http_status == 404


# --------------------------------------------------------------------- meter events


def test_meter_events_are_deduplicated_by_identifier(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create({"email": "ada@example.com"})

    def report(identifier: str, value: str, at: int | None = None) -> stripe.billing.MeterEvent:
        return client.v1.billing.meter_events.create(
            {
                "event_name": "agent_tokens",
                "identifier": identifier,
                "payload": {"stripe_customer_id": customer.id, "value": value},
                "timestamp": server.now() - 60 if at is None else at,
            }
        )

    # Read once: the clock may pass a second boundary between two reads.
    at = server.now() - 60
    event = report("run-1", "120", at)
    assert event.object == "billing.meter_event"
    assert (event.event_name, event.identifier) == ("agent_tokens", "run-1")
    assert event.payload.to_dict() == {"stripe_customer_id": customer.id, "value": "120"}
    assert event.timestamp == at
    assert event.livemode is False
    report("run-2", "30")

    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        report("run-1", "120")
    error = duplicate.value
    assert error.http_status == 400
    assert (error.code, error.param) == (DUPLICATE_METER_EVENT_CODE, "identifier")
    assert error.error is not None
    assert error.error.type == "invalid_request_error"
    assert error.headers is not None
    assert error.headers["Stripe-Should-Retry"] == "false"

    assert [e["identifier"] for e in server.meter_events()] == ["run-1", "run-2"]
    assert server.meter_event_totals("agent_tokens") == {customer.id: Decimal(150)}

    server.advance(METER_IDENTIFIER_WINDOW_SECONDS + 1)
    report("run-1", "1")
    assert len(server.meter_events("agent_tokens")) == 3


def test_meter_event_without_identifier_gets_one(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    event = client.v1.billing.meter_events.create(
        {"event_name": "agent_tokens", "payload": {"stripe_customer_id": "cus_x", "value": "1"}}
    )
    assert event.identifier
    assert server.meter_events()[0]["identifier"] == event.identifier


# --------------------------------------------------------------------- idempotency


def test_the_library_sends_an_idempotency_key_on_every_post(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    customer_and_subscription(client)
    keys = [r.idempotency_key for r in server.requests_to("POST")]
    assert len(keys) == 2
    assert all(keys)
    assert len(set(keys)) == 2
    assert server.requests_to("GET") == []


def test_a_repeated_idempotency_key_replays_the_first_answer(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    params: stripe.params.CustomerCreateParams = {"email": "ada@example.com"}
    first = client.v1.customers.create(params, {"idempotency_key": "create-ada"})
    second = client.v1.customers.create(params, {"idempotency_key": "create-ada"})

    assert second.id == first.id
    assert len(server.customers()) == 1
    original, replay = server.requests
    assert (original.replayed, replay.replayed) == (False, True)
    assert replay.status == original.status == 200
    assert replay.response == original.response
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"

    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"email": "bob@example.com"}, {"idempotency_key": "create-ada"})
    assert len(server.customers()) == 1


def test_a_replayed_meter_event_is_not_counted_again(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    params: stripe.params.billing.MeterEventCreateParams = {
        "event_name": "agent_tokens",
        "identifier": "run-7",
        "payload": {"stripe_customer_id": "cus_x", "value": "5"},
    }
    client.v1.billing.meter_events.create(params, {"idempotency_key": "meter-run-7"})
    replay = client.v1.billing.meter_events.create(params, {"idempotency_key": "meter-run-7"})

    assert replay.identifier == "run-7"
    assert len(server.meter_events()) == 1


# --------------------------------------------------------------------- failure injection


def test_injected_500_is_an_api_error_and_applies_nothing(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    server.fail_next(status=500)

    with pytest.raises(stripe.APIError) as error:
        client.v1.customers.create({"email": "ada@example.com"})

    assert error.value.http_status == 500
    assert error.value.error is not None
    assert error.value.error.type == "api_error"
    assert server.customers() == {}
    assert server.requests[0].injected is True
    client.v1.customers.create({"email": "ada@example.com"})  # only the next one failed
    assert len(server.customers()) == 1


def test_the_library_retries_a_500_with_the_same_idempotency_key(server: StripeServer) -> None:
    retrying = server.client(max_network_retries=1)
    server.fail_next(status=500)

    customer = retrying.v1.customers.create({"email": "ada@example.com"})

    failed, succeeded = server.requests
    assert (failed.status, succeeded.status) == (500, 200)
    assert failed.idempotency_key == succeeded.idempotency_key
    assert succeeded.replayed is False  # injected failures are not stored under the key
    assert list(server.customers()) == [customer.id]


def test_injected_429_is_a_rate_limit_error_the_library_does_not_retry(
    server: StripeServer,
) -> None:
    retrying = server.client(max_network_retries=2)
    server.fail_next(status=429, headers={"Retry-After": "1"})

    with pytest.raises(stripe.RateLimitError) as error:
        retrying.v1.customers.create({"email": "ada@example.com"})

    assert error.value.http_status == 429
    assert error.value.error is not None
    assert error.value.error.code == "rate_limit"
    assert error.value.headers is not None
    assert error.value.headers["Retry-After"] == "1"
    assert len(server.requests) == 1


def test_failures_match_a_path_prefix(server: StripeServer, client: stripe.StripeClient) -> None:
    server.fail_next(count=2, status=503, path_prefix="/v1/billing/")

    client.v1.customers.create({"email": "ada@example.com"})
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.billing.meter_events.create(
                {"event_name": "agent_tokens", "payload": {"value": "1"}}
            )
    client.v1.billing.meter_events.create({"event_name": "agent_tokens", "payload": {"value": "1"}})

    assert [r.status for r in server.requests] == [200, 503, 503, 200]
    assert len(server.meter_events()) == 1


def test_a_timed_out_request_was_still_applied(server: StripeServer) -> None:
    impatient = server.client(timeout=0.2)
    server.delay_next(2.0, path_prefix="/v1/billing/meter_events")
    params: stripe.params.billing.MeterEventCreateParams = {
        "event_name": "agent_tokens",
        "identifier": "run-9",
        "payload": {"stripe_customer_id": "cus_x", "value": "5"},
    }

    with pytest.raises(stripe.APIConnectionError) as error:
        impatient.v1.billing.meter_events.create(params, {"idempotency_key": "meter-run-9"})
    assert error.value.should_retry is True

    # Stripe did the work: the event counts once whatever the caller does next.
    assert len(server.meter_events()) == 1
    replay = impatient.v1.billing.meter_events.create(params, {"idempotency_key": "meter-run-9"})
    assert replay.identifier == "run-9"
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        impatient.v1.billing.meter_events.create(params)  # a fresh idempotency key
    assert duplicate.value.code == DUPLICATE_METER_EVENT_CODE
    assert len(server.meter_events()) == 1
    assert [r.replayed for r in server.requests] == [False, True, False]
    assert server.requests[0].delay == 2.0


def test_the_library_retry_after_a_timeout_is_a_replay(server: StripeServer) -> None:
    retrying = server.client(timeout=0.2, max_network_retries=1)
    server.delay_next(2.0)

    customer = retrying.v1.customers.create({"email": "ada@example.com"})

    assert list(server.customers()) == [customer.id]
    first, retry = server.requests
    assert retry.idempotency_key == first.idempotency_key
    assert retry.replayed is True


# --------------------------------------------------------------------- the fake itself


def test_a_fixed_port_is_served() -> None:
    with StripeServer() as first:
        port = int(first.url.rsplit(":", 1)[1])
    with StripeServer(port=port) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        customer = server.client().v1.customers.create({"email": "ada@example.com"})
        assert list(server.customers()) == [customer.id]


def test_reset_forgets_everything(server: StripeServer, client: stripe.StripeClient) -> None:
    customer_and_subscription(client)
    client.v1.customers.create({"email": "x@example.com"}, {"idempotency_key": "k"})
    server.fail_next(status=500)

    server.reset()

    assert server.requests == []
    assert server.customers() == {}
    assert server.subscriptions() == {}
    again = client.v1.customers.create({"email": "x@example.com"}, {"idempotency_key": "k"})
    assert server.requests[0].replayed is False
    assert list(server.customers()) == [again.id]


def test_requests_without_an_api_key_are_refused(server: StripeServer) -> None:
    response = httpx.post(f"{server.url}/v1/customers", data={"email": "a@example.com"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_nest_form_builds_lists_and_dicts() -> None:
    pairs = [
        ("items[0][price]", "p1"),
        ("items[1][price]", "p2"),
        ("items[1][quantity]", "2"),
        ("metadata[tenant_id]", "t"),
        ("expand[]", "a"),
        ("expand[]", "b"),
        ("email", "e"),
    ]
    assert nest_form(pairs) == {
        "items": [{"price": "p1"}, {"price": "p2", "quantity": "2"}],
        "metadata": {"tenant_id": "t"},
        "expand": ["a", "b"],
        "email": "e",
    }


def test_the_stripe_client_does_not_retry_by_default(server: StripeServer) -> None:
    """Unlike the module-level API (``stripe.max_network_retries = 2``), a StripeClient built
    without ``max_network_retries`` makes one attempt."""
    default = stripe.StripeClient("sk_test_x", base_addresses={"api": server.url})
    server.fail_next(status=500)

    with pytest.raises(stripe.APIError):
        default.v1.customers.create({"email": "ada@example.com"})
    assert len(server.requests) == 1


# The library's httpx client posts its form body as ``data=<str>``, which httpx deprecates; under
# the project's ``filterwarnings = error`` every async call fails unless this warning is ignored.
@pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
async def test_async_calls_go_through_httpx(server: StripeServer) -> None:
    http_client = stripe.HTTPXClient(timeout=0.2)
    client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": server.url}, http_client=http_client
    )
    try:
        customer = await client.v1.customers.create_async({"email": "ada@example.com"})
        assert list(server.customers()) == [customer.id]

        server.delay_next(2.0)
        with pytest.raises(stripe.APIConnectionError):
            await client.v1.customers.create_async({"email": "bob@example.com"})
        assert len(server.customers()) == 2
    finally:
        close: Callable[[], Awaitable[None]] = http_client.close_async
        await close()
