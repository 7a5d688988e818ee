"""The application fuzzed as deployed, and a registered tenant whose resources exist.

Schemathesis calls an ASGI application from an event loop of its own, in a thread, so the
test's rolled-back transaction (bound to the session's loop) cannot be shared with it. The
fuzzed app is the app as deployed (``create_app(settings)``, no override): each request
commits into the session's database, which is dropped when the session ends, as with
``live_client``. Its Stripe is a local one of this package, so billing operations reach a
Stripe; its jobs go to the session's broker, where a runs worker executes the runs, so that
a run's stream ends with its terminal event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from schemathesis.python import asgi
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.billing.plans import sync_plan_prices
from switchboard.kit.db import SessionMaker
from switchboard.models import Membership, TenantDataDeletion, User
from switchboard.settings import Settings
from tests.fuzz.tenant import FuzzTenant, sign_up_and_use
from tests.support.stripe_server import StripeServer
from tests.support.worker import start_worker, stop_worker, wait_until_ready


@pytest.fixture(scope="module")
def fuzz_stripe() -> Iterator[StripeServer]:
    with StripeServer() as server:
        server.add_price("price_tokens", usage_type="metered", meter="mtr_switchboard_tokens")
        yield server


@pytest.fixture(scope="module")
def fuzz_runs_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    process = start_worker(
        tmp_path_factory.mktemp("fuzz-runs-worker"),
        pool="threads",
        concurrency=4,
        queues="runs",
        # wait_until_ready reads the "ready." line of the INFO log.
        env={"LOG_LEVEL": "INFO"},
    )
    try:
        wait_until_ready(process)
        yield
    finally:
        stop_worker(process)


@pytest.fixture(scope="module")
def fuzz_committed(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture(scope="module")
async def fuzz_plans_priced(fuzz_committed: SessionMaker, settings: Settings) -> None:
    """What `switchboard billing sync-plans` does, so that the plans can be subscribed to."""
    async with fuzz_committed() as session, session.begin():
        await sync_plan_prices(session, settings.billing)


@pytest.fixture(scope="module")
def fuzz_app(
    settings: Settings,
    committed_keys: KeySnapshot,
    fuzz_stripe: StripeServer,
    fuzz_runs_worker: None,
    fuzz_plans_priced: None,
) -> Iterator[FastAPI]:
    stripe = settings.stripe.model_copy(update={"api_base": fuzz_stripe.url})
    # A long local run outlasts the 15 minutes of an access token.
    auth = settings.auth.model_copy(update={"access_token_ttl_seconds": 86_400})
    app = create_app(settings.model_copy(update={"stripe": stripe, "auth": auth}))
    try:
        yield app
    finally:
        # Schemathesis keeps the lifespan it started; it ends before the database is dropped.
        asgi.shutdown_lifespans()


@pytest.fixture
def fuzz_owner(
    fuzz_app: FastAPI, request: pytest.FixtureRequest
) -> tuple[dict[str, Any], FuzzTenant]:
    # The operation that starts a subscription is fuzzed on a tenant without one.
    starts_one = getattr(request.node, "operation_label", "") == "POST /api/v1/billing/subscription"
    with asgi.get_client(fuzz_app) as client:
        return sign_up_and_use(client, subscribe=not starts_one)


@pytest.fixture
async def fuzz_tenant(
    fuzz_owner: tuple[dict[str, Any], FuzzTenant], fuzz_committed: SessionMaker
) -> FuzzTenant:
    """A tenant of its own for each operation, plus the rows the API makes only through mail
    or a purge: a second member (its invitation's token goes by mail) and a deletion record."""
    registered, tenant = fuzz_owner
    tenant_id = uuid.UUID(registered["tenant"]["id"])
    async with fuzz_committed() as session, session.begin():
        user = User(
            email=f"fuzz-member-{uuid.uuid4().hex[:8]}@example.com",
            password_hash="x",
            pepper_version=1,
        )
        session.add(user)
        await session.flush()
        session.add(Membership(tenant_id=tenant_id, user_id=user.id, role="member"))
        # Recorded, never enqueued: a purge would delete the fuzzed tenant's data.
        deletion = TenantDataDeletion(
            tenant_id=tenant_id, requested_by=uuid.UUID(registered["user"]["id"])
        )
        session.add(deletion)
        await session.flush()
        member_id, deletion_id = str(user.id), str(deletion.id)
    values = {
        **tenant.values,
        "user_id": (member_id, *tenant.values["user_id"]),
        "deletion_id": (deletion_id,),
    }
    return FuzzTenant(access_token=tenant.access_token, values=values)
