"""The dispatcher: what it sends again, and how much of one endpoint at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from switchboard.kit.db import SessionMaker
from switchboard.models import WebhookDelivery, WebhookEvent
from switchboard.webhooks.repository import WebhookRepository
from switchboard.webhooks.signing import SecretBox
from tests.support.members import Member
from tests.webhooks.conftest import add_endpoint


async def add_deliveries(
    sessionmaker: SessionMaker,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    count: int,
    **state: object,
) -> list[uuid.UUID]:
    ids = []
    async with sessionmaker() as session, session.begin():
        for _ in range(count):
            event = WebhookEvent(tenant_id=tenant_id, type="webhook.test", data={})
            session.add(event)
            await session.flush()
            delivery = WebhookDelivery(
                tenant_id=tenant_id, endpoint_id=endpoint_id, event_id=event.id, **state
            )
            session.add(delivery)
            await session.flush()
            ids.append(delivery.id)
    return ids


async def test_due_and_lapsed_deliveries_go_out_at_most_the_endpoints_concurrency_each(
    sessionmaker: SessionMaker, secret_box: SecretBox, owner: Member
) -> None:
    now = datetime.now(UTC)
    slow = await add_endpoint(sessionmaker, secret_box, owner.tenant_id, ["webhook.test"])
    other = await add_endpoint(sessionmaker, secret_box, owner.tenant_id, ["webhook.test"])
    backlog = await add_deliveries(
        sessionmaker,
        owner.tenant_id,
        slow.id,
        10,
        status="pending",
        attempts=1,
        next_attempt_at=now - timedelta(seconds=1),
    )
    lapsed = await add_deliveries(
        sessionmaker,
        owner.tenant_id,
        other.id,
        1,
        status="sending",
        attempts=1,
        next_attempt_at=now - timedelta(minutes=1),
        lease_until=now - timedelta(seconds=1),
    )
    await add_deliveries(  # neither due nor lapsed
        sessionmaker,
        owner.tenant_id,
        other.id,
        1,
        status="pending",
        attempts=1,
        next_attempt_at=now + timedelta(minutes=5),
    )
    await add_deliveries(
        sessionmaker,
        owner.tenant_id,
        other.id,
        1,
        status="sending",
        attempts=1,
        next_attempt_at=now,
        lease_until=now + timedelta(minutes=1),
    )

    async with sessionmaker() as session, session.begin():
        sent = await WebhookRepository(session).dispatch_due(
            now=now, lease_until=now + timedelta(minutes=5), limit=100, per_endpoint=4
        )

    from_slow = {ref.id for ref in sent if ref.endpoint_id == slow.id}
    assert len(from_slow) == 4
    assert from_slow <= set(backlog)
    assert [ref.id for ref in sent if ref.endpoint_id == other.id] == lapsed
    async with sessionmaker() as session:
        statuses = {
            delivery_id: (await session.get(WebhookDelivery, delivery_id)).status  # type: ignore[union-attr]
            for delivery_id in backlog
        }
    assert sorted(statuses.values()) == ["pending"] * 6 + ["queued"] * 4
