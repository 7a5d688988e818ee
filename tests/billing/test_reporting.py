"""Metered usage reaches Stripe exactly once: through failures, timeouts and a killed worker."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from switchboard.billing.gateway import StripeGateway
from switchboard.billing.reporting import report_usage, unreported
from switchboard.kit.db import SessionMaker
from switchboard.models import UsageRecord
from switchboard.settings import Settings
from tests.billing.conftest import new_tenant, record_usage
from tests.support.stripe_server import StripeServer
from tests.support.waiting import eventually
from tests.support.worker import WorkerProcess, start_worker, stop_worker, wait_until_ready
from tests.support.worker_app import ISOLATED_QUEUE

EVENTS = "/v1/billing/meter_events"

pytestmark = pytest.mark.usefixtures("stripe_api")


class Tenant:
    def __init__(self, tenant_id: uuid.UUID, customer: str | None) -> None:
        self.id = tenant_id
        self.customer = customer


async def tenant_with_usage(
    sessionmaker: SessionMaker, runs: list[tuple[int, int]], *, billable: bool = True
) -> Tenant:
    customer = f"cus_{uuid.uuid4().hex[:14]}" if billable else None
    tenant = Tenant(await new_tenant(sessionmaker, customer=customer), customer)
    async with sessionmaker() as session, session.begin():
        for input_tokens, output_tokens in runs:
            await record_usage(
                session,
                tenant_id=tenant.id,
                run_id=uuid.uuid4(),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                at=datetime.now(UTC),
            )
    return tenant


async def records(sessionmaker: SessionMaker, tenant: Tenant) -> list[UsageRecord]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(UsageRecord)
            .where(UsageRecord.tenant_id == tenant.id)
            .order_by(UsageRecord.created_at)
        )
        return list(rows)


def billed(stripe_api: StripeServer, settings: Settings, tenant: Tenant) -> Decimal:
    totals = stripe_api.meter_event_totals(settings.stripe.meter_event_name)
    return totals.get(tenant.customer or "", Decimal(0))


@pytest.fixture
def gateway(settings: Settings) -> StripeGateway:
    return StripeGateway(settings.stripe)


async def test_usage_is_reported_in_batches_once(
    sessionmaker: SessionMaker, stripe_api: StripeServer, settings: Settings, gateway: StripeGateway
) -> None:
    tenant = await tenant_with_usage(sessionmaker, [(10, 20), (1, 2), (100, 200)])

    first = await report_usage(sessionmaker, gateway, batch_size=2)
    again = await report_usage(sessionmaker, gateway, batch_size=2)

    assert sorted(b.records for b in first.reported if b.tenant_id == tenant.id) == [1, 2]
    assert not [b for b in again.reported if b.tenant_id == tenant.id]
    assert billed(stripe_api, settings, tenant) == 333
    events = [
        e
        for e in stripe_api.meter_events()
        if e["payload"]["stripe_customer_id"] == tenant.customer
    ]
    assert len(events) == 2
    calls = {r.idempotency_key for r in stripe_api.requests_to("POST", EVENTS)}
    assert {e["identifier"] for e in events} <= calls  # identifier doubles as idempotency key
    rows = await records(sessionmaker, tenant)
    assert {r.report_state for r in rows} == {"reported"}
    assert sorted(r.reported_quantity or 0 for r in rows) == [3, 30, 300]
    assert all(r.stripe_identifier and r.stripe_identifier.startswith("usage-") for r in rows)


async def test_tenants_without_a_stripe_customer_are_skipped(
    sessionmaker: SessionMaker, stripe_api: StripeServer, gateway: StripeGateway
) -> None:
    tenant = await tenant_with_usage(sessionmaker, [(5, 5)], billable=False)
    assert any(b.tenant_id == tenant.id and b.tokens == 10 for b in await unreported(sessionmaker))

    summary = await report_usage(sessionmaker, gateway, batch_size=10)

    assert summary.skipped_records >= 1
    assert [r.report_state for r in await records(sessionmaker, tenant)] == ["skipped"]
    assert not any(b.tenant_id == tenant.id for b in await unreported(sessionmaker))


@pytest.mark.parametrize("failure", ["500", "429", "timeout"])
async def test_a_failed_report_is_sent_again_and_counted_once(
    sessionmaker: SessionMaker,
    stripe_api: StripeServer,
    settings: Settings,
    gateway: StripeGateway,
    failure: str,
) -> None:
    # Reports cover every tenant: send what other tests committed first, so the one
    # failure injected below hits this tenant's batch.
    await report_usage(sessionmaker, gateway, batch_size=10)
    tenant = await tenant_with_usage(sessionmaker, [(7, 8), (1, 1)])
    if failure == "timeout":
        # Stripe records the event; its answer comes after our 2 s timeout.
        stripe_api.delay_next(3, path_prefix=EVENTS)
    else:
        stripe_api.fail_next(1, int(failure), path_prefix=EVENTS)

    first = await report_usage(sessionmaker, gateway, batch_size=10)
    rows = await records(sessionmaker, tenant)
    assert [b.tenant_id for b in first.failed] == [tenant.id]
    assert {r.report_state for r in rows} == {"sending"}
    assert all(r.last_error for r in rows)

    second = await report_usage(sessionmaker, gateway, batch_size=10)

    assert [b.id for b in second.reported if b.tenant_id == tenant.id] == [first.failed[0].id]
    assert billed(stripe_api, settings, tenant) == 17
    rows = await records(sessionmaker, tenant)
    assert {r.report_state for r in rows} == {"reported"}
    assert {r.report_attempts for r in rows} == {2}
    sent = [
        r
        for r in stripe_api.requests_to("POST", EVENTS)
        if r.idempotency_key == first.failed[0].identifier
    ]
    assert len(sent) == 2
    assert sent[1].replayed is (failure == "timeout")


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture
def reporting_worker(celery_app: Celery, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A prefork worker on a queue of its own, with a Stripe timeout long enough to be killed
    while it waits for Stripe's answer."""
    worker = start_worker(
        tmp_path,
        queues=ISOLATED_QUEUE,
        env={"STRIPE_TIMEOUT_SECONDS": "60", "LOG_LEVEL": "INFO"},
    )
    wait_until_ready(worker)
    yield worker
    stop_worker(worker)


async def test_a_worker_killed_mid_report_reports_once_when_redelivered(
    celery_app: Celery,
    committed: SessionMaker,
    stripe_api: StripeServer,
    settings: Settings,
    reporting_worker: WorkerProcess,
) -> None:
    tenant = await tenant_with_usage(committed, [(40, 2)])
    stripe_api.delay_next(30, path_prefix=EVENTS)  # Stripe records it, the worker waits

    celery_app.send_task("billing.usage.report", queue=ISOLATED_QUEUE)

    def recorded() -> bool:
        return billed(stripe_api, settings, tenant) > 0

    deadline = time.monotonic() + 60
    while not recorded():
        assert time.monotonic() < deadline, reporting_worker.log()
        time.sleep(0.02)
    [child] = child_pids(reporting_worker.process.pid)
    os.kill(child, signal.SIGKILL)  # the task dies before it can store the answer

    async def reported() -> list[UsageRecord] | None:
        rows = await records(committed, tenant)
        return rows if {r.report_state for r in rows} == {"reported"} else None

    rows = await eventually(reported, timeout=60)

    assert billed(stripe_api, settings, tenant) == 42
    [identifier] = {r.stripe_identifier for r in rows}
    sent = [r for r in stripe_api.requests_to("POST", EVENTS) if r.idempotency_key == identifier]
    assert len(sent) == 2
    assert sent[1].replayed
    assert "WorkerLostError" in reporting_worker.log()


@pytest.mark.usefixtures("worker")
async def test_the_report_task_retries_stripe_failures_with_backoff(
    celery_app: Celery, committed: SessionMaker, stripe_api: StripeServer, settings: Settings
) -> None:
    tenant = await tenant_with_usage(committed, [(3, 4), (5, 6)])
    stripe_api.fail_next(2, 503, path_prefix=EVENTS)

    celery_app.send_task("billing.usage.report")

    async def reported() -> list[UsageRecord] | None:
        rows = await records(committed, tenant)
        return rows if {r.report_state for r in rows} == {"reported"} else None

    rows = await eventually(reported, timeout=60)
    assert billed(stripe_api, settings, tenant) == 18
    [identifier] = {r.stripe_identifier for r in rows}
    sent = [r for r in stripe_api.requests_to("POST", EVENTS) if r.idempotency_key == identifier]
    assert [r.status for r in sent] == [503, 503, 200]


async def test_an_identifier_stripe_already_holds_counts_as_reported(
    stripe_api: StripeServer, settings: Settings, gateway: StripeGateway
) -> None:
    """The first attempt's answer was lost and its idempotency key forgotten: Stripe refuses
    the identifier, and the batch is taken as sent, not sent twice."""
    identifier = f"usage-{uuid.uuid4()}"
    stripe_api.client(settings.stripe.api_key.get_secret_value()).v1.billing.meter_events.create(
        {
            "event_name": settings.stripe.meter_event_name,
            "identifier": identifier,
            "payload": {"stripe_customer_id": "cus_lost", "value": "5"},
        }
    )

    sent = await gateway.report_tokens(
        identifier, customer_id="cus_lost", tokens=5, at=datetime.now(UTC)
    )

    assert sent is False
    assert stripe_api.meter_event_totals(settings.stripe.meter_event_name)["cus_lost"] == 5
