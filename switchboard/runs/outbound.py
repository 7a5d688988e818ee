"""Runs' outbound webhook events, each written in the transaction that writes the change it
reports: a run's final state, or its pause for approvals."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.models import Run
from switchboard.runs.reads import run_read
from switchboard.webhooks.jobs import DeliveryRef
from switchboard.webhooks.outbox import record_event, subscribers
from switchboard.webhooks.schemas import WebhookEventType

_ENDED = {
    "succeeded": WebhookEventType.run_completed,
    "failed": WebhookEventType.run_failed,
    "cancelled": WebhookEventType.run_cancelled,
}


async def run_ended(
    session: AsyncSession,
    run_id: uuid.UUID,
    tenant_id: uuid.UUID,
    status: str,
    *,
    rolled_back: bool,
) -> list[DeliveryRef]:
    """``run.completed``, ``run.failed`` or ``run.cancelled`` with the run as GET
    /runs/{id} shows it. A run a later chat rolled back ends as cancelled, as its stream
    does. The run is read only when an endpoint subscribes to the event."""
    event_type = _ENDED["cancelled" if rolled_back else status]
    endpoints = await subscribers(session, tenant_id, event_type)
    if not endpoints:
        return []
    run = await session.get(Run, run_id, populate_existing=True)
    assert run is not None  # its final write is in this transaction
    data = run_read(run).model_dump(mode="json")
    if rolled_back:
        data["status"] = "cancelled"
    return await record_event(session, tenant_id, event_type, data, endpoints=endpoints)


async def run_paused(
    session: AsyncSession, run: Run, approvals: Sequence[dict[str, Any]]
) -> list[DeliveryRef]:
    """``run.requires_action``: the run and the tool calls waiting for a decision, as its
    stream's event lists them."""
    data = {**run_read(run).model_dump(mode="json"), "approvals": list(approvals)}
    return await record_event(session, run.tenant_id, WebhookEventType.run_requires_action, data)
