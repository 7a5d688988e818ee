"""Webhooks fixtures: the app with a job sender that keeps its jobs, endpoints written straight
into the test's transaction, and reads of the outbox tables."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from switchboard.settings import Settings
from switchboard.webhooks.signing import SecretBox, new_secret
from tests.support.app import in_test_transaction
from tests.support.jobs import SentJobs
from tests.support.members import Member, NewMember

ENDPOINTS = "/api/v1/webhooks/endpoints"
PROBLEM = "application/problem+json"


@pytest.fixture
def sent_jobs() -> SentJobs:
    """The jobs the app sends after its commits, kept instead of reaching a broker."""
    return SentJobs()


@pytest.fixture
async def webhooks_api(
    settings: Settings,
    sessionmaker: SessionMaker,
    sent_jobs: SentJobs,
    committed_keys: KeySnapshot,
) -> AsyncIterator[AsyncClient]:
    """The real app in the test's transaction; its jobs go to ``sent_jobs``."""
    app = create_app(settings, job_sender=sent_jobs)
    async with in_test_transaction(app, sessionmaker) as client:
        yield client


@pytest.fixture
def secret_box(settings: Settings) -> SecretBox:
    """The box the app seals endpoints' secrets with."""
    return SecretBox.for_settings(settings.webhooks)


@pytest.fixture
async def owner(new_member: NewMember) -> Member:
    """The owner of a new tenant."""
    return await new_member()


@dataclass(frozen=True)
class StoredEndpoint:
    id: uuid.UUID
    tenant_id: uuid.UUID
    secret: str


async def add_endpoint(
    sessionmaker: SessionMaker,
    box: SecretBox,
    tenant_id: uuid.UUID,
    events: Sequence[str],
    *,
    enabled: bool = True,
    url: str = "https://hooks.example.com/in",
) -> StoredEndpoint:
    """An endpoint written straight into the database, its secret sealed as the API seals it."""
    endpoint_id = uuid.uuid4()
    secret = new_secret()
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        session.add(
            WebhookEndpoint(
                id=endpoint_id,
                tenant_id=tenant_id,
                url=url,
                events=list(events),
                enabled=enabled,
                disabled_reason=None if enabled else "failing",
                secret=box.seal(endpoint_id, secret),
                created_at=now,
                updated_at=now,
            )
        )
    return StoredEndpoint(endpoint_id, tenant_id, secret)


async def events_of(sessionmaker: SessionMaker, tenant_id: uuid.UUID) -> list[WebhookEvent]:
    """The tenant's webhook events, oldest first."""
    async with sessionmaker() as session:
        query = (
            select(WebhookEvent)
            .where(WebhookEvent.tenant_id == tenant_id)
            .order_by(WebhookEvent.created_at, WebhookEvent.id)
        )
        return list(await session.scalars(query))


async def deliveries_of(
    sessionmaker: SessionMaker,
    *,
    event_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
) -> list[WebhookDelivery]:
    """The deliveries of an event, or of a tenant."""
    async with sessionmaker() as session:
        query = select(WebhookDelivery)
        if event_id is not None:
            query = query.where(WebhookDelivery.event_id == event_id)
        if tenant_id is not None:
            query = query.where(WebhookDelivery.tenant_id == tenant_id)
        return list(await session.scalars(query.order_by(WebhookDelivery.id)))


async def add_attempts(
    sessionmaker: SessionMaker,
    delivery: WebhookDelivery,
    created: Sequence[datetime],
    *,
    status: str = "failed",
) -> list[WebhookAttempt]:
    """One attempt of ``delivery`` logged at each of ``created``, numbered in that order."""
    attempts = [
        WebhookAttempt(
            id=uuid.uuid4(),
            tenant_id=delivery.tenant_id,
            endpoint_id=delivery.endpoint_id,
            delivery_id=delivery.id,
            attempt=number,
            status=status,
            response_status=500 if status == "failed" else 200,
            duration_ms=10 * number,
            error="http_status" if status == "failed" else None,
            next_attempt_at=None,
            created_at=at,
        )
        for number, at in enumerate(created, start=1)
    ]
    async with sessionmaker() as session, session.begin():
        session.add_all(attempts)
    return attempts
