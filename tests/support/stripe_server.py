"""A local fake of the Stripe API, served over real HTTP on a free loopback port.

Tests point the official ``stripe`` library at it::

    with StripeServer() as server:
        client = server.client()  # or build one yourself, see ``StripeServer.client``
        customer = client.v1.customers.create({"email": "a@example.com"})

It covers what Switchboard's billing uses: customers, subscriptions (create, retrieve, update,
cancel) and v1 billing meter events, with Stripe's form encoding, error shape, idempotency keys
and meter-event identifier deduplication. Everything is kept in memory and recorded
(``server.requests``) so tests can assert on what reached "Stripe".

Behaviour worth knowing:

* Idempotency (POST only, like Stripe v1): the first successful (2xx) response for an
  ``Idempotency-Key`` is stored; a later request with the same key and the same method, path and
  parameters gets those bytes and that status back with ``Idempotent-Replayed: true`` and creates
  nothing. The same key with another method, path or parameters is a 400 ``idempotency_error``
  (the library raises ``stripe.IdempotencyError``). 4xx answers are not stored (Stripe stores a
  result only once the endpoint starts executing; validation failures are not), and neither are
  injected failures, so a retry with the same key after ``fail_next`` runs for real.
* Meter events: an ``identifier`` accepted within the last 24 hours (fake clock, see
  ``advance``) is rejected with 400 ``invalid_request_error``, code
  ``DUPLICATE_METER_EVENT_CODE``, param ``identifier``, message ``An event already exists with
  identifier <id>.`` and header ``Stripe-Should-Retry: false`` (the message and header are what
  real Stripe answers; Stripe does not document the code, so match on the status, type and param
  rather than on the code).
* ``fail_next`` answers the next matching requests with an error before anything is applied or
  stored (the request never reached Stripe's endpoint).
* ``delay_next`` applies the request first (creates, updates, stores the idempotent result) and
  only then waits before answering: Stripe did the work but a client with a short timeout gave
  up. A retry with the same idempotency key, even while the first answer is still being held
  back, is a replay; a retry with a fresh key does the work again (or, for a meter event with the
  same identifier, is rejected as a duplicate).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
import stripe

from tests.support.http_server import FakeHandler, FakeServer

Json = dict[str, Any]

PERIOD_SECONDS = 30 * 24 * 60 * 60
METER_IDENTIFIER_WINDOW_SECONDS = 24 * 60 * 60
IDEMPOTENCY_KEY_TTL_SECONDS = 24 * 60 * 60
DUPLICATE_METER_EVENT_CODE = "resource_already_exists"
PRORATION_BEHAVIORS = frozenset({"always_invoice", "create_prorations", "none"})
DEFAULT_API_KEY = "sk_test_switchboard_fake"

_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/v1/customers"), "_create_customer"),
    ("GET", re.compile(r"/v1/customers/(?P<id>[^/]+)"), "_retrieve_customer"),
    ("POST", re.compile(r"/v1/subscriptions"), "_create_subscription"),
    ("GET", re.compile(r"/v1/subscriptions/(?P<id>[^/]+)"), "_retrieve_subscription"),
    ("POST", re.compile(r"/v1/subscriptions/(?P<id>[^/]+)"), "_update_subscription"),
    ("DELETE", re.compile(r"/v1/subscriptions/(?P<id>[^/]+)"), "_cancel_subscription"),
    ("POST", re.compile(r"/v1/billing/meter_events"), "_create_meter_event"),
)
_FORM_KEY = re.compile(r"^(?P<head>[^\[\]]+)(?P<rest>(?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class StripeApiError(Exception):
    """An error answered in Stripe's shape: ``{"error": {"type", "message", "code", "param"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> Json:
        error: Json = {"type": self.error_type, "message": self.message, "code": self.code}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it, and what it answered."""

    method: str
    path: str
    query: str
    params: dict[str, str]
    """Form (and query) parameters as sent: ``{"items[0][price]": "price_x", ...}``."""
    form: dict[str, Any]
    """The same parameters nested: ``{"items": [{"price": "price_x"}], ...}``."""
    idempotency_key: str | None
    headers: dict[str, str]
    status: int
    response: Json
    replayed: bool
    """The answer was an idempotent replay: nothing was created or changed."""
    injected: bool
    """The answer was a failure injected with ``fail_next``: nothing was applied."""
    delay: float
    """Seconds the answer was held back (``delay_next``), after the request was applied."""
    at: float

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass
class _Failure:
    remaining: int
    status: int
    path_prefix: str | None
    method: str | None
    error_type: str
    code: str | None
    message: str
    headers: dict[str, str]


@dataclass
class _Delay:
    remaining: int
    seconds: float
    path_prefix: str | None
    method: str | None


@dataclass(frozen=True)
class _Stored:
    method: str
    path: str
    params: dict[str, str]
    status: int
    body: bytes
    request_id: str
    at: int


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def nest_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Turns Stripe's bracketed form keys into nested dicts, with index-keyed dicts as lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _FORM_KEY.match(key)
        if match is None:
            root[key] = value
            continue
        path = [match["head"], *_SEGMENT.findall(match["rest"])]
        node = root
        for position, segment in enumerate(path[:-1]):
            child = node.get(segment)
            if not isinstance(child, dict):
                child = {}
                node[segment] = child
            if path[position + 1] == "":  # "a[]" appends
                path[position + 1] = str(len(child))
            node = child
        node[path[-1]] = value
    return _listify(root)


def _listify(node: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in node.items():
        converted[key] = _listify_value(value)
    return converted


def _listify_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    inner = _listify(value)
    if inner and all(k.isdigit() for k in inner):
        return [inner[k] for k in sorted(inner, key=int)]
    return inner


def _random_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(7)}"


class StripeServer(FakeServer):
    """An in-memory Stripe API on ``http://127.0.0.1:<free port>``; see the module docstring."""

    thread_name = "stripe-fake"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """``port=0`` picks a free port; pass one to serve where other processes expect it."""
        super().__init__(_Handler, host=host, port=port)
        self._lock = threading.RLock()
        self._closers: list[Callable[[], None]] = []
        self.url = ""
        self._clear()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> StripeServer:
        super().start()
        self.url = self.origin
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers held back by delay_next
        for close in self._closers:
            close()
        self._closers.clear()
        super().stop()

    def client(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        timeout: float = 5.0,
        max_network_retries: int = 0,
    ) -> stripe.StripeClient:
        """A ``stripe.StripeClient`` aimed at this server; its HTTP client closes on ``stop``.

        ``max_network_retries`` defaults to 0 so a test sees each failure; pass more to watch
        the library retry (it sleeps at least 0.5 s before each retry).
        """
        http_client = stripe.RequestsClient(timeout=timeout)
        self._closers.append(http_client.close)
        return stripe.StripeClient(
            api_key,
            base_addresses={
                "api": self.url,
                "meter_events": self.url,
                "files": self.url,
                "connect": self.url,
            },
            http_client=http_client,
            max_network_retries=max_network_retries,
        )

    # ----------------------------------------------------------------- state and inspection

    def _clear(self) -> None:
        self._offset = 0.0
        self._customers: dict[str, Json] = {}
        self._subscriptions: dict[str, Json] = {}
        self._prices: dict[str, Json] = {}
        self._meter_events: list[Json] = []
        self._meter_identifiers: dict[str, float] = {}
        self._idempotency: dict[str, _Stored] = {}
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []

    def reset(self) -> None:
        """Forgets every object, idempotency key, recording, pending fault and clock offset."""
        with self._lock:
            self._clear()

    def now(self) -> int:
        """The fake's clock (unix seconds): real time plus whatever ``advance`` added."""
        with self._lock:
            return int(time.time() + self._offset)

    def advance(self, seconds: float) -> None:
        """Moves the fake's clock forward, e.g. past the 24 h meter-event identifier window."""
        with self._lock:
            self._offset += seconds

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(
        self, method: str | None = None, path_prefix: str | None = None
    ) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (path_prefix is None or r.path.startswith(path_prefix))
        ]

    def meter_events(self, event_name: str | None = None) -> list[Json]:
        """Meter events actually accepted (no replays, no rejected duplicates), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._meter_events
                if event_name is None or e["event_name"] == event_name
            ]

    def meter_event_totals(
        self, event_name: str, *, customer_key: str = "stripe_customer_id", value_key: str = "value"
    ) -> dict[str, Decimal]:
        """Sum of accepted ``payload[value]`` per ``payload[stripe_customer_id]``."""
        totals: dict[str, Decimal] = {}
        for event in self.meter_events(event_name):
            customer = event["payload"].get(customer_key, "")
            totals[customer] = totals.get(customer, Decimal(0)) + Decimal(
                event["payload"].get(value_key, "0")
            )
        return totals

    def customers(self) -> dict[str, Json]:
        with self._lock:
            return copy.deepcopy(self._customers)

    def subscriptions(self) -> dict[str, Json]:
        with self._lock:
            return copy.deepcopy(self._subscriptions)

    def customer(self, customer_id: str) -> Json:
        return self.customers()[customer_id]

    def subscription(self, subscription_id: str) -> Json:
        return self.subscriptions()[subscription_id]

    def add_price(
        self,
        price_id: str,
        *,
        unit_amount: int | None = None,
        currency: str = "usd",
        interval: str = "month",
        usage_type: str = "licensed",
        meter: str | None = None,
        lookup_key: str | None = None,
        product: str = "prod_switchboard_fake",
    ) -> Json:
        """Registers a price. Unknown price ids are accepted too, as licensed monthly prices.

        A ``usage_type="metered"`` price refuses a quantity, as Stripe does.
        """
        price: Json = {
            "id": price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": self.now(),
            "currency": currency,
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": {},
            "nickname": None,
            "product": product,
            "recurring": {
                "interval": interval,
                "interval_count": 1,
                "meter": meter,
                "usage_type": usage_type,
            },
            "tax_behavior": "unspecified",
            "type": "recurring",
            "unit_amount": unit_amount,
            "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
        }
        with self._lock:
            self._prices[price_id] = price
        return copy.deepcopy(price)

    # ----------------------------------------------------------------- fault injection

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        path_prefix: str | None = None,
        *,
        method: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The next ``count`` matching requests fail with ``status``; nothing is applied or stored.

        Defaults: 5xx → ``api_error``; 429 → ``invalid_request_error`` with code ``rate_limit``
        (the library raises ``stripe.RateLimitError`` on any 429); other 4xx →
        ``invalid_request_error``. ``headers`` adds response headers, e.g.
        ``{"Stripe-Should-Retry": "true"}`` (the library's retry hint) or ``Retry-After``.
        """
        if status == 429:
            default_type, default_code = "invalid_request_error", "rate_limit"
            default_message = "Request rate limit exceeded. (injected by the Stripe fake)"
        elif status >= 500:
            default_type, default_code = "api_error", None
            default_message = "Something went wrong on Stripe's end. (injected by the Stripe fake)"
        else:
            default_type, default_code = "invalid_request_error", None
            default_message = "Injected failure. (injected by the Stripe fake)"
        with self._lock:
            self._failures.append(
                _Failure(
                    remaining=count,
                    status=status,
                    path_prefix=path_prefix,
                    method=method.upper() if method else None,
                    error_type=error_type or default_type,
                    code=code if code is not None else default_code,
                    message=message or default_message,
                    headers=dict(headers or {}),
                )
            )

    def delay_next(
        self,
        seconds: float,
        count: int = 1,
        path_prefix: str | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """The next ``count`` matching answers are held back ``seconds`` AFTER being applied.

        So a client whose timeout is shorter sees a connection error although Stripe did the
        work. Injected failures and replays that match are delayed too.
        """
        with self._lock:
            self._delays.append(
                _Delay(
                    remaining=count,
                    seconds=seconds,
                    path_prefix=path_prefix,
                    method=method.upper() if method else None,
                )
            )

    @staticmethod
    def _matches(rule: _Failure | _Delay, method: str, path: str) -> bool:
        return (rule.method is None or rule.method == method) and (
            rule.path_prefix is None or path.startswith(rule.path_prefix)
        )

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        for rule in self._failures:
            if rule.remaining > 0 and self._matches(rule, method, path):
                rule.remaining -= 1
                return rule
        return None

    def _take_delay(self, method: str, path: str) -> float:
        for rule in self._delays:
            if rule.remaining > 0 and self._matches(rule, method, path):
                rule.remaining -= 1
                return rule.seconds
        return 0.0

    # ----------------------------------------------------------------- request handling

    def _answer(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> _Answer:
        parts = urlsplit(raw_path)
        path = parts.path
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if body:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        params = dict(pairs)
        form = nest_form(pairs)
        lowered = {k.lower(): v for k, v in headers.items()}
        key = lowered.get("idempotency-key") if method == "POST" else None
        request_id = _random_id("req")
        out_headers = {"Request-Id": request_id}
        if "idempotency-key" in lowered:
            out_headers["Idempotency-Key"] = lowered["idempotency-key"]
        if "stripe-version" in lowered:
            out_headers["Stripe-Version"] = lowered["stripe-version"]

        with self._lock:
            replayed = injected = False
            delay = self._take_delay(method, path)
            failure = self._take_failure(method, path)
            status: int
            payload: Json
            stored = self._idempotency.get(key) if key else None
            if stored is not None and self.now() - stored.at >= IDEMPOTENCY_KEY_TTL_SECONDS:
                stored = None  # pruned, as Stripe may after 24 h: the key runs anew
            try:
                if failure is not None:
                    injected = True
                    out_headers.update(failure.headers)
                    raise StripeApiError(
                        failure.status,
                        failure.message,
                        error_type=failure.error_type,
                        code=failure.code,
                    )
                if not lowered.get("authorization", "").startswith("Bearer "):
                    raise StripeApiError(
                        401,
                        "You did not provide an API key.",
                        error_type="invalid_request_error",
                    )
                if stored is not None:
                    if (stored.method, stored.path, stored.params) != (method, path, params):
                        raise StripeApiError(
                            400,
                            f"Keys for idempotent requests can only be used with the same "
                            f"parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                            error_type="idempotency_error",
                        )
                    replayed = True
                    out_headers["Idempotent-Replayed"] = "true"
                    out_headers["Original-Request"] = stored.request_id
                    status, raw = stored.status, stored.body
                    payload = json.loads(raw)
                else:
                    status, payload = self._route(method, path, form)
                    raw = json.dumps(payload).encode()
                    if key and 200 <= status < 300:
                        self._idempotency[key] = _Stored(
                            method, path, params, status, raw, request_id, self.now()
                        )
            except StripeApiError as error:
                status, payload = error.status, error.body()
                out_headers.update(error.headers)
                raw = json.dumps(payload).encode()
            except Exception as error:  # a bug in the fake: answer like Stripe's 500
                status = 500
                payload = StripeApiError(
                    500, f"Stripe fake crashed: {error!r}", error_type="api_error"
                ).body()
                raw = json.dumps(payload).encode()
            self._requests.append(
                RecordedRequest(
                    method=method,
                    path=path,
                    query=parts.query,
                    params=params,
                    form=form,
                    idempotency_key=key,
                    headers=dict(headers),
                    status=status,
                    response=json.loads(raw),
                    replayed=replayed,
                    injected=injected,
                    delay=delay,
                    at=time.time(),
                )
            )
        return _Answer(status=status, body=raw, headers=out_headers, delay=delay)

    def _route(self, method: str, path: str, form: dict[str, Any]) -> tuple[int, Json]:
        for route_method, pattern, name in _ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and route_method == method:
                handler: Callable[..., Json] = getattr(self, name)
                return 200, handler(form, **match.groupdict())
        raise StripeApiError(
            404,
            f"Unrecognized request URL ({method}: {path}). The Stripe fake does not serve it.",
        )

    # ----------------------------------------------------------------- customers

    def _create_customer(self, form: dict[str, Any]) -> Json:
        customer: Json = {
            "id": _random_id("cus"),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self.now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": _text(form, "description"),
            "discount": None,
            "email": _text(form, "email"),
            "invoice_prefix": secrets.token_hex(4).upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": _merge_metadata({}, form),
            "name": _text(form, "name"),
            "phone": _text(form, "phone"),
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self._customers[customer["id"]] = customer
        return customer

    def _retrieve_customer(self, form: dict[str, Any], id: str) -> Json:
        customer = self._customers.get(id)
        if customer is None:
            raise _missing("customer", id, param="id", status=404)
        return customer

    # ----------------------------------------------------------------- subscriptions

    def _price(self, price_id: str) -> Json:
        price = self._prices.get(price_id)
        if price is None:
            price = self.add_price(price_id)
        return price

    def _item(self, subscription: Json, entry: dict[str, Any], index: int) -> Json:
        price_id = entry.get("price")
        if not isinstance(price_id, str) or not price_id:
            raise StripeApiError(
                400,
                f"Missing required param: items[{index}][price].",
                code="parameter_missing",
                param=f"items[{index}][price]",
            )
        price = self._price(price_id)
        now = self.now()
        item: Json = {
            "id": _random_id("si"),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": now,
            "current_period_end": subscription["current_period_end"],
            "current_period_start": subscription["current_period_start"],
            "discounts": [],
            "metadata": {},
            "plan": _plan(price),
            "price": price,
            "quantity": None,
            "subscription": subscription["id"],
            "tax_rates": [],
        }
        self._set_quantity(item, entry, index)
        item["metadata"] = _merge_metadata({}, entry)
        return item

    def _set_quantity(self, item: Json, entry: dict[str, Any], index: int) -> None:
        metered = item["price"]["recurring"]["usage_type"] == "metered"
        if "quantity" in entry:
            if metered:
                raise StripeApiError(
                    400,
                    "Quantity should not be specified where usage_type is `metered`. "
                    f"Remove quantity from `items[{index}]`.",
                    param=f"items[{index}][quantity]",
                )
            item["quantity"] = _integer(entry["quantity"], f"items[{index}][quantity]")
        elif item["quantity"] is None and not metered:
            item["quantity"] = 1
        if metered:
            item["quantity"] = None

    def _create_subscription(self, form: dict[str, Any]) -> Json:
        customer_id = _text(form, "customer")
        if not customer_id:
            raise StripeApiError(
                400, "Missing required param: customer.", code="parameter_missing", param="customer"
            )
        if customer_id not in self._customers:
            raise _missing("customer", customer_id, param="customer", status=400)
        entries = form.get("items")
        if not isinstance(entries, list) or not entries:
            raise StripeApiError(
                400, "Missing required param: items.", code="parameter_missing", param="items"
            )
        now = self.now()
        subscription: Json = {
            "id": _random_id("sub"),
            "object": "subscription",
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": _text(form, "collection_method") or "charge_automatically",
            "created": now,
            "currency": "usd",
            "current_period_end": now + PERIOD_SECONDS,
            "current_period_start": now,
            "customer": customer_id,
            "days_until_due": None,
            "default_payment_method": _text(form, "default_payment_method"),
            "description": _text(form, "description"),
            "discounts": [],
            "ended_at": None,
            "latest_invoice": None,
            "livemode": False,
            "metadata": _merge_metadata({}, form),
            "pause_collection": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "active",
            "test_clock": None,
            "trial_end": None,
            "trial_start": None,
        }
        items = [self._item(subscription, _entry(e, i), i) for i, e in enumerate(entries)]
        _refuse_duplicate_prices(items)
        subscription["currency"] = items[0]["price"]["currency"]
        subscription["items"] = _list(items, subscription["id"])
        if "cancel_at_period_end" in form:
            flag = _boolean(form["cancel_at_period_end"], "cancel_at_period_end")
            self._set_cancel_at_period_end(subscription, flag)
        self._subscriptions[subscription["id"]] = subscription
        return subscription

    def _retrieve_subscription(self, form: dict[str, Any], id: str) -> Json:
        subscription = self._subscriptions.get(id)
        if subscription is None:
            raise _missing("subscription", id, param="id", status=404)
        return subscription

    def _update_subscription(self, form: dict[str, Any], id: str) -> Json:
        subscription = self._retrieve_subscription(form, id)
        if subscription["status"] == "canceled" and set(form) - {
            "metadata",
            "cancellation_details",
            "expand",
        }:
            raise StripeApiError(
                400,
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        behavior = form.get("proration_behavior")
        if behavior is not None and behavior not in PRORATION_BEHAVIORS:
            raise StripeApiError(
                400,
                "Invalid proration_behavior: must be one of "
                + ", ".join(sorted(PRORATION_BEHAVIORS)),
                code="parameter_invalid_string",
                param="proration_behavior",
            )
        cancel_at_period_end = (
            _boolean(form["cancel_at_period_end"], "cancel_at_period_end")
            if "cancel_at_period_end" in form
            else None
        )
        metadata = _merge_metadata(subscription["metadata"], form)
        entries = form.get("items")
        items: list[Json] | None = None
        if entries is not None:
            if not isinstance(entries, list):
                raise StripeApiError(400, "Invalid array", param="items")
            items = list(subscription["items"]["data"])
            for index, raw_entry in enumerate(entries):
                entry = _entry(raw_entry, index)
                item_id = entry.get("id")
                if item_id is None:
                    items.append(self._item(subscription, entry, index))
                    continue
                position = next((p for p, i in enumerate(items) if i["id"] == item_id), None)
                if position is None:
                    raise _missing(
                        "subscription item", item_id, param=f"items[{index}][id]", status=400
                    )
                if _boolean(entry.get("deleted", "false"), f"items[{index}][deleted]"):
                    del items[position]
                    continue
                item = dict(items[position])
                if "price" in entry:
                    item["price"] = self._price(entry["price"])
                    item["plan"] = _plan(item["price"])
                self._set_quantity(item, entry, index)
                item["metadata"] = _merge_metadata(dict(item["metadata"]), entry)
                items[position] = item
            _refuse_duplicate_prices(items)
        # Everything is valid: apply.
        if items is not None:
            subscription["items"] = _list(items, subscription["id"])
        if cancel_at_period_end is not None:
            self._set_cancel_at_period_end(subscription, cancel_at_period_end)
        if "description" in form:
            subscription["description"] = _text(form, "description") or None
        details = form.get("cancellation_details")
        if isinstance(details, dict):
            for name in ("comment", "feedback"):
                if name in details:
                    subscription["cancellation_details"][name] = details[name] or None
        subscription["metadata"] = metadata
        return subscription

    def _set_cancel_at_period_end(self, subscription: Json, flag: bool) -> None:
        subscription["cancel_at_period_end"] = flag
        if flag:
            subscription["cancel_at"] = subscription["current_period_end"]
            subscription["canceled_at"] = self.now()
            subscription["cancellation_details"]["reason"] = "cancellation_requested"
        else:
            subscription["cancel_at"] = None
            subscription["canceled_at"] = None
            subscription["cancellation_details"]["reason"] = None

    def _cancel_subscription(self, form: dict[str, Any], id: str) -> Json:
        subscription = self._subscriptions.get(id)
        # Stripe answers an already canceled subscription as if it did not exist.
        if subscription is None or subscription["status"] == "canceled":
            raise _missing("subscription", id, param="id", status=404)
        now = self.now()
        subscription["status"] = "canceled"
        subscription["canceled_at"] = now
        subscription["ended_at"] = now
        subscription["cancellation_details"]["reason"] = "cancellation_requested"
        details = form.get("cancellation_details")
        if isinstance(details, dict):
            for name in ("comment", "feedback"):
                if name in details:
                    subscription["cancellation_details"][name] = details[name] or None
        return subscription

    # ----------------------------------------------------------------- meter events

    def _create_meter_event(self, form: dict[str, Any]) -> Json:
        event_name = _text(form, "event_name")
        if not event_name:
            raise StripeApiError(
                400,
                "Missing required param: event_name.",
                code="parameter_missing",
                param="event_name",
            )
        payload = form.get("payload")
        if not isinstance(payload, dict) or not payload:
            raise StripeApiError(
                400, "Missing required param: payload.", code="parameter_missing", param="payload"
            )
        value = payload.get("value")
        if value is not None:
            try:
                Decimal(value)
            except InvalidOperation:
                raise StripeApiError(
                    400,
                    f"Invalid value in payload[value]: {value!r} is not a number.",
                    param="payload[value]",
                ) from None
        now = self.now()
        timestamp = _integer(form["timestamp"], "timestamp") if "timestamp" in form else now
        identifier = _text(form, "identifier") or str(uuid.uuid4())
        seen = self._meter_identifiers.get(identifier)
        if seen is not None and now - seen < METER_IDENTIFIER_WINDOW_SECONDS:
            raise StripeApiError(
                400,
                f"An event already exists with identifier {identifier}.",
                code=DUPLICATE_METER_EVENT_CODE,
                param="identifier",
                headers={"Stripe-Should-Retry": "false"},
            )
        self._meter_identifiers[identifier] = now
        event: Json = {
            "object": "billing.meter_event",
            "created": now,
            "event_name": event_name,
            "identifier": identifier,
            "livemode": False,
            "payload": payload,
            "timestamp": timestamp,
        }
        self._meter_events.append(event)
        return event


# --------------------------------------------------------------------- form helpers


def _text(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _entry(raw: Any, index: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise StripeApiError(400, f"Invalid object: items[{index}]", param=f"items[{index}]")
    return raw


def _integer(raw: Any, param: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise StripeApiError(
            400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param=param
        ) from None


def _boolean(raw: Any, param: str) -> bool:
    if raw in ("true", "false"):
        return bool(raw == "true")
    raise StripeApiError(400, f"Invalid boolean: {raw}", param=param)


def _merge_metadata(current: dict[str, str], form: Mapping[str, Any]) -> dict[str, str]:
    """Stripe's rules: ``metadata=""`` clears all, ``metadata[k]=""`` removes ``k``."""
    if "metadata" not in form:
        return current
    incoming = form["metadata"]
    if incoming == "":
        return {}
    if not isinstance(incoming, dict):
        raise StripeApiError(400, "Invalid hash", param="metadata")
    merged = dict(current)
    for key, value in incoming.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _missing(kind: str, object_id: str, *, param: str, status: int) -> StripeApiError:
    return StripeApiError(
        status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )


def _refuse_duplicate_prices(items: list[Json]) -> None:
    seen: set[str] = set()
    for item in items:
        price_id = item["price"]["id"]
        if price_id in seen:
            raise StripeApiError(
                400,
                f"Cannot add multiple subscription items with the same price: {price_id}",
                param="items",
            )
        seen.add(price_id)


def _plan(price: Json) -> Json:
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "currency": price["currency"],
        "interval": price["recurring"]["interval"],
        "interval_count": price["recurring"]["interval_count"],
        "livemode": False,
        "meter": price["recurring"]["meter"],
        "product": price["product"],
        "usage_type": price["recurring"]["usage_type"],
    }


def _list(items: list[Json], subscription_id: str) -> Json:
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "total_count": len(items),
        "url": f"/v1/subscription_items?subscription={subscription_id}",
    }


# --------------------------------------------------------------------- HTTP


class _Handler(FakeHandler):
    @property
    def fake(self) -> StripeServer:
        return cast(StripeServer, self.server.fake)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake = self.fake
        answer = fake._answer(method, self.path, dict(self.headers.items()), body)
        if answer.delay > 0 and fake._stopping.wait(answer.delay):
            return  # the server is stopping: drop the answer
        # The client may have given up (timed out) before the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_json(answer.status, answer.body, answer.headers)


@pytest.fixture
def stripe_server() -> Iterator[StripeServer]:
    """A running fake per test (list ``tests.support.stripe_server`` in ``pytest_plugins``)."""
    with StripeServer() as server:
        yield server
