"""A tenant's webhook endpoints, their secrets, test events, delivery log and redeliveries.

A request service: it takes the request's session and job buffer and never commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from switchboard.auth.principal import Principal
from switchboard.kit.jobs import JobBuffer
from switchboard.kit.pagination import Page, decode_created_cursor, encode_created_cursor
from switchboard.models import WebhookEndpoint
from switchboard.webhooks.errors import (
    DeliveryNotFoundError,
    EndpointDisabledError,
    EndpointLimitError,
    EndpointNotFoundError,
    InvalidEndpointUrlError,
)
from switchboard.webhooks.guard import InvalidWebhookUrlError, check_url
from switchboard.webhooks.jobs import DeliveryRef, deliver_jobs
from switchboard.webhooks.outbox import QUEUED_LEASE, record_event
from switchboard.webhooks.repository import AttemptRow, WebhookRepository
from switchboard.webhooks.schemas import (
    AttemptRead,
    DeliveryQueued,
    EndpointCreate,
    EndpointCreated,
    EndpointRead,
    EndpointUpdate,
    SecretRotated,
    WebhookEventType,
)
from switchboard.webhooks.settings import WebhookSettings
from switchboard.webhooks.signing import SecretBox, new_secret

log = structlog.get_logger("switchboard.webhooks")


@dataclass
class WebhookService:
    repo: WebhookRepository
    jobs: JobBuffer
    settings: WebhookSettings
    box: SecretBox

    async def create(self, actor: Principal, request: EndpointCreate) -> EndpointCreated:
        url = self._checked(request.url)
        await self.repo.lock_tenant(actor.tenant_id)
        if await self.repo.count_endpoints(actor.tenant_id) >= self.settings.max_endpoints:
            raise EndpointLimitError(
                f"A tenant has at most {self.settings.max_endpoints} webhook endpoints."
            )
        secret = new_secret()
        endpoint_id = uuid.uuid4()
        now = datetime.now(UTC)
        endpoint = WebhookEndpoint(
            id=endpoint_id,
            tenant_id=actor.tenant_id,
            url=url,
            description=request.description,
            events=[event.value for event in request.events],
            enabled=True,
            secret=self.box.seal(endpoint_id, secret),
            created_at=now,
            updated_at=now,
        )
        self.repo.add(endpoint)
        await self.repo.flush()
        log.info(
            "webhooks.endpoint_created",
            tenant_id=str(actor.tenant_id),
            endpoint_id=str(endpoint_id),
            events=endpoint.events,
        )
        return EndpointCreated.model_validate({**_fields(endpoint), "secret": secret})

    async def endpoints(self, actor: Principal) -> list[EndpointRead]:
        return [EndpointRead.model_validate(e) for e in await self.repo.endpoints(actor.tenant_id)]

    async def get(self, actor: Principal, endpoint_id: uuid.UUID) -> EndpointRead:
        return EndpointRead.model_validate(await self._endpoint(actor, endpoint_id))

    async def update(
        self, actor: Principal, endpoint_id: uuid.UUID, request: EndpointUpdate
    ) -> EndpointRead:
        endpoint = await self._endpoint(actor, endpoint_id, lock=True)
        changes = request.model_dump(exclude_unset=True)
        if changes.get("url") is not None:
            endpoint.url = self._checked(changes["url"])
        if request.events is not None:
            endpoint.events = [event.value for event in request.events]
        if "description" in changes:
            endpoint.description = request.description
        if request.enabled is not None and request.enabled != endpoint.enabled:
            endpoint.enabled = request.enabled
            # Enabled again, it starts a fresh failure window.
            endpoint.disabled_reason = None
            endpoint.failing_since = None
        endpoint.updated_at = datetime.now(UTC)
        await self.repo.flush()
        log.info(
            "webhooks.endpoint_updated",
            tenant_id=str(actor.tenant_id),
            endpoint_id=str(endpoint_id),
            fields=sorted(changes),
        )
        return EndpointRead.model_validate(endpoint)

    async def delete(self, actor: Principal, endpoint_id: uuid.UUID) -> None:
        if not await self.repo.delete_endpoint(actor.tenant_id, endpoint_id):
            raise EndpointNotFoundError("The tenant has no such webhook endpoint.")
        log.info(
            "webhooks.endpoint_deleted",
            tenant_id=str(actor.tenant_id),
            endpoint_id=str(endpoint_id),
        )

    async def rotate_secret(self, actor: Principal, endpoint_id: uuid.UUID) -> SecretRotated:
        """A new secret signs from now on; the one it replaces signs alongside it for
        ``WEBHOOKS_SECRET_OVERLAP_SECONDS``. A secret rotated out earlier stops at once."""
        endpoint = await self._endpoint(actor, endpoint_id, lock=True)
        secret = new_secret()
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=self.settings.secret_overlap_seconds)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = expires_at
        endpoint.secret = self.box.seal(endpoint.id, secret)
        endpoint.updated_at = now
        await self.repo.flush()
        log.info(
            "webhooks.secret_rotated", tenant_id=str(actor.tenant_id), endpoint_id=str(endpoint_id)
        )
        return SecretRotated(secret=secret, previous_secret_expires_at=expires_at)

    async def send_test(self, actor: Principal, endpoint_id: uuid.UUID) -> DeliveryQueued:
        """A ``webhook.test`` event to this endpoint alone, whatever it subscribes to."""
        endpoint = await self._endpoint(actor, endpoint_id)
        self._ensure_enabled(endpoint)
        data = {"endpoint_id": str(endpoint.id), "message": "A test event from Switchboard."}
        (delivery,) = await record_event(
            self.repo.session,
            actor.tenant_id,
            WebhookEventType.webhook_test,
            data,
            only=endpoint.id,
        )
        self._send([delivery])
        stored = await self.repo.delivery(delivery.id)
        assert stored is not None
        return DeliveryQueued(event_id=stored.event_id, delivery_id=delivery.id)

    async def attempts(
        self, actor: Principal, endpoint_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> Page[AttemptRead]:
        """The endpoint's delivery log, newest first."""
        await self._endpoint(actor, endpoint_id)
        before = decode_created_cursor(cursor) if cursor is not None else None
        rows = await self.repo.attempts(
            actor.tenant_id, endpoint_id, before=before, limit=limit + 1
        )
        shown = rows[:limit]
        more = len(rows) > limit
        last = shown[-1].attempt if shown else None
        next_cursor = (
            encode_created_cursor((last.created_at, last.id)) if more and last is not None else None
        )
        return Page([_attempt_read(row) for row in shown], next_cursor)

    async def redeliver(self, actor: Principal, attempt_id: uuid.UUID) -> DeliveryQueued:
        """Sends the attempt's event to its endpoint again, as a new delivery with the same
        ``webhook-id`` and a fresh schedule of retries."""
        attempt = await self.repo.attempt(actor.tenant_id, attempt_id)
        delivery = await self.repo.delivery(attempt.delivery_id) if attempt else None
        if attempt is None or delivery is None:
            raise DeliveryNotFoundError("The tenant has no such delivery.")
        endpoint = await self._endpoint(actor, delivery.endpoint_id)
        self._ensure_enabled(endpoint)
        now = datetime.now(UTC)
        (ref,) = await self.repo.add_deliveries(
            actor.tenant_id,
            delivery.event_id,
            [endpoint.id],
            now=now,
            lease_until=now + QUEUED_LEASE,
        )
        self._send([ref])
        log.info(
            "webhooks.redelivery_requested",
            tenant_id=str(actor.tenant_id),
            endpoint_id=str(endpoint.id),
            event_id=str(delivery.event_id),
            delivery_id=str(ref.id),
        )
        return DeliveryQueued(event_id=delivery.event_id, delivery_id=ref.id)

    def _send(self, deliveries: list[DeliveryRef]) -> None:
        for job in deliver_jobs(deliveries):
            self.jobs.enqueue(job.name, *job.args, queue=job.queue)

    def _checked(self, url: str) -> str:
        try:
            return check_url(url, allow_private=self.settings.allow_private_targets)
        except InvalidWebhookUrlError as exc:
            raise InvalidEndpointUrlError(str(exc)) from None

    async def _endpoint(
        self, actor: Principal, endpoint_id: uuid.UUID, *, lock: bool = False
    ) -> WebhookEndpoint:
        endpoint = await self.repo.endpoint(actor.tenant_id, endpoint_id, lock=lock)
        if endpoint is None:
            raise EndpointNotFoundError("The tenant has no such webhook endpoint.")
        return endpoint

    @staticmethod
    def _ensure_enabled(endpoint: WebhookEndpoint) -> None:
        if not endpoint.enabled:
            raise EndpointDisabledError(
                "The endpoint is disabled: enable it (PATCH enabled=true) to send to it."
            )


def _fields(endpoint: WebhookEndpoint) -> dict[str, object]:
    return EndpointRead.model_validate(endpoint).model_dump()


def _attempt_read(row: AttemptRow) -> AttemptRead:
    attempt = row.attempt
    return AttemptRead(
        id=attempt.id,
        delivery_id=attempt.delivery_id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=attempt.status,
        response_status=attempt.response_status,
        duration_ms=attempt.duration_ms,
        error=attempt.error,
        attempt=attempt.attempt,
        created_at=attempt.created_at,
        next_attempt_at=attempt.next_attempt_at,
    )
