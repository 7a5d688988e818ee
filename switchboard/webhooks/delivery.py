"""Delivery of outbound webhooks: jobs on the ``webhooks`` queue, each taking a sessionmaker
and owning short transactions.

One attempt: claim the delivery in Postgres (a lease bounds the claim, so a worker killed
mid-attempt loses it to the dispatcher), take a slot of its endpoint, sign and send, then
record the attempt and the delivery's next state in one commit. A delivery is attempted at
least once; retries and redeliveries carry the same ``webhook-id``, for receivers to
deduplicate.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobSender
from switchboard.models import WebhookAttempt
from switchboard.webhooks.inflight import EndpointSlots
from switchboard.webhooks.jobs import DeliveryRef, deliver_jobs
from switchboard.webhooks.metrics import (
    ATTEMPT_SECONDS,
    ATTEMPTS,
    DELIVERIES,
    DELIVERY_LATENCY,
    ENDPOINT_BUSY,
    ENDPOINTS_DISABLED,
    RETRIES_PENDING,
)
from switchboard.webhooks.outbox import QUEUED_LEASE
from switchboard.webhooks.repository import ClaimedDelivery, WebhookRepository
from switchboard.webhooks.settings import WebhookSettings
from switchboard.webhooks.signing import SecretBox, SecretUnreadableError, signed_headers
from switchboard.webhooks.transport import Outcome, WebhookTransport

log = structlog.get_logger("switchboard.webhooks")

# A retry this soon goes back on the broker with a countdown; later ones wait in Postgres for
# the dispatcher, since the Redis broker redelivers long-delayed tasks at its visibility timeout.
DIRECT_RETRY_SECONDS = 60
# A delivery whose endpoint is busy tries again after 0.5 s, doubling; after this many tries
# it waits in Postgres for the dispatcher instead, so a long outage holds no job chains.
BUSY_TRIES = 4
BUSY_WAIT = timedelta(seconds=30)
DISPATCH_BATCH = 1000


def sending_lease(settings: WebhookSettings) -> timedelta:
    """How long one attempt may hold its delivery: its whole time limit and a margin."""
    return timedelta(seconds=settings.connect_timeout_seconds + settings.timeout_seconds + 5)


def envelope(claimed: ClaimedDelivery, max_bytes: int) -> bytes:
    """The Standard Webhooks body. Data too large to send is cut to its short top-level
    scalars (ids, status) with ``"truncated": true``."""
    timestamp = claimed.event_created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def body(data: dict[str, Any]) -> bytes:
        document = {"type": claimed.event_type, "timestamp": timestamp, "data": data}
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    whole = body(claimed.data)
    if len(whole) <= max_bytes:
        return whole
    scalars = {
        key: value
        for key, value in claimed.data.items()
        if isinstance(value, str | int | float | bool) and len(str(value)) <= 200
    }
    return body({**scalars, "truncated": True})


@dataclass
class Deliverer:
    sessionmaker: SessionMaker
    transport: WebhookTransport
    box: SecretBox
    slots: EndpointSlots
    jobs: JobSender
    settings: WebhookSettings

    async def deliver(self, ref: DeliveryRef, busy: int = 0) -> str:
        """One attempt of the delivery, if it is due; what became of it."""
        token = await self.slots.take(ref.endpoint_id)
        if token is None:
            ENDPOINT_BUSY.inc()
            await self._wait_for_slot(ref, busy)
            return "busy"
        try:
            now = datetime.now(UTC)
            async with self.sessionmaker() as session, session.begin():
                claimed = await WebhookRepository(session).claim(
                    ref.id, now=now, lease_until=now + sending_lease(self.settings)
                )
            if claimed is None:
                return "skipped"
            outcome = await self._attempt(claimed)
        finally:
            await self.slots.give_back(ref.endpoint_id, token)
        return await self._record(claimed, outcome)

    async def _wait_for_slot(self, ref: DeliveryRef, busy: int) -> None:
        if busy + 1 < BUSY_TRIES:
            countdown = 0.5 * 2**busy * random.uniform(1, 1.5)  # noqa: S311 (jitter)
            await self.jobs.send(deliver_jobs([ref], countdown=countdown, busy=busy + 1))
            return
        async with self.sessionmaker() as session, session.begin():
            await WebhookRepository(session).postpone(ref.id, at=datetime.now(UTC) + BUSY_WAIT)

    async def _attempt(self, claimed: ClaimedDelivery) -> Outcome:
        started = time.perf_counter()
        try:
            secrets = [self.box.open(claimed.endpoint_id, claimed.secret)]
        except SecretUnreadableError:
            log.error("webhooks.secret_unreadable", endpoint_id=str(claimed.endpoint_id))
            elapsed = int((time.perf_counter() - started) * 1000)
            return Outcome(None, elapsed, "secret_unreadable", "the secret does not open")
        if claimed.previous_secret is not None and (
            claimed.previous_secret_expires_at is not None
            and claimed.previous_secret_expires_at > datetime.now(UTC)
        ):
            # A rotation made to recover from a lost encryption key leaves an old secret that
            # does not open: the new one signs alone.
            with contextlib.suppress(SecretUnreadableError):
                secrets.append(self.box.open(claimed.endpoint_id, claimed.previous_secret))
        body = envelope(claimed, self.settings.max_payload_bytes)
        headers = signed_headers(str(claimed.event_id), int(time.time()), body, secrets)
        return await self.transport.post(str(claimed.endpoint_id), claimed.url, body, headers)

    async def _record(self, claimed: ClaimedDelivery, outcome: Outcome) -> str:
        now = datetime.now(UTC)
        retry_in: float | None = None
        disabled = False
        async with self.sessionmaker() as session, session.begin():
            repo = WebhookRepository(session)
            if outcome.ok:
                current = await repo.succeeded(claimed, now)
                result = "succeeded"
            else:
                retry_in = self._retry_delay(claimed.attempt)
                if retry_in is None:
                    current = await repo.give_up(claimed, now)
                    result = "failed"
                else:
                    soon = retry_in <= DIRECT_RETRY_SECONDS
                    at = now + timedelta(seconds=retry_in)
                    current = await repo.retry(
                        claimed,
                        status="queued" if soon else "pending",
                        at=at,
                        lease_until=at + QUEUED_LEASE if soon else None,
                    )
                    result = "retrying"
                disabled = await self._disable_if_failing(repo, claimed, now)
                if disabled:
                    retry_in, result = None, "failed"
            repo.log_attempt(
                WebhookAttempt(
                    tenant_id=claimed.tenant_id,
                    endpoint_id=claimed.endpoint_id,
                    delivery_id=claimed.id,
                    attempt=claimed.attempt,
                    status="succeeded" if outcome.ok else "failed",
                    response_status=outcome.status_code,
                    duration_ms=outcome.duration_ms,
                    error=outcome.error,
                    next_attempt_at=now + timedelta(seconds=retry_in) if retry_in else None,
                    created_at=now,
                )
            )
            if disabled:
                repo.log_attempt(
                    WebhookAttempt(
                        tenant_id=claimed.tenant_id,
                        endpoint_id=claimed.endpoint_id,
                        delivery_id=claimed.id,
                        attempt=claimed.attempt,
                        status="endpoint_disabled",
                        error="failing",
                        created_at=now + timedelta(microseconds=1),
                    )
                )
        self._observe(claimed, outcome, result, now)
        if current and retry_in is not None and retry_in <= DIRECT_RETRY_SECONDS:
            ref = DeliveryRef(claimed.id, claimed.endpoint_id)
            await self.jobs.send(deliver_jobs([ref], countdown=retry_in))
        return result

    def _retry_delay(self, attempt: int) -> float | None:
        delays = self.settings.retry_delays_seconds
        return delays[attempt - 1] if attempt <= len(delays) else None

    async def _disable_if_failing(
        self, repo: WebhookRepository, claimed: ClaimedDelivery, now: datetime
    ) -> bool:
        failing_since = await repo.mark_failing(claimed.endpoint_id, now)
        window = timedelta(seconds=self.settings.disable_after_seconds)
        if failing_since is None or now - failing_since < window:
            return False
        if not await repo.disable_failing(claimed.endpoint_id, now):
            return False
        log.warning(
            "webhooks.endpoint_disabled",
            tenant_id=str(claimed.tenant_id),
            endpoint_id=str(claimed.endpoint_id),
            failing_since=failing_since.isoformat(),
        )
        return True

    def _observe(
        self, claimed: ClaimedDelivery, outcome: Outcome, result: str, now: datetime
    ) -> None:
        ATTEMPTS.labels(outcome.error or "succeeded").inc()
        ATTEMPT_SECONDS.observe(outcome.duration_ms / 1000)
        fields = {
            "tenant_id": str(claimed.tenant_id),
            "endpoint_id": str(claimed.endpoint_id),
            "delivery_id": str(claimed.id),
            "event_id": str(claimed.event_id),
            "event_type": claimed.event_type,
            "attempt": claimed.attempt,
            "status_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
        }
        if result == "succeeded":
            DELIVERIES.labels("succeeded").inc()
            DELIVERY_LATENCY.observe((now - claimed.event_created_at).total_seconds())
            log.info("webhooks.delivered", **fields)
            return
        if result == "failed":
            DELIVERIES.labels("failed").inc()
        log.warning(
            "webhooks.attempt_failed",
            error=outcome.error,
            detail=outcome.detail,
            gave_up=result == "failed",
            **fields,
        )


async def dispatch_due(
    sessionmaker: SessionMaker, jobs: JobSender, settings: WebhookSettings
) -> int:
    """Sends the jobs of the deliveries whose time has come, and counts what the gauges
    show. A send that fails leaves them queued: the next dispatch after their lease sends
    them again."""
    now = datetime.now(UTC)
    sent = 0
    while True:
        async with sessionmaker() as session, session.begin():
            due = await WebhookRepository(session).dispatch_due(
                now=now,
                lease_until=now + QUEUED_LEASE,
                limit=DISPATCH_BATCH,
                per_endpoint=settings.endpoint_concurrency,
            )
        if due:
            await jobs.send(deliver_jobs(due))
            sent += len(due)
        if len(due) < DISPATCH_BATCH:
            break
    async with sessionmaker() as session:
        repo = WebhookRepository(session)
        RETRIES_PENDING.set(await repo.count_retries_pending())
        ENDPOINTS_DISABLED.set(await repo.count_disabled())
    if sent:
        log.info("webhooks.dispatched", deliveries=sent)
    return sent


def parse_ref(delivery_id: str, endpoint_id: str) -> DeliveryRef:
    return DeliveryRef(uuid.UUID(delivery_id), uuid.UUID(endpoint_id))
