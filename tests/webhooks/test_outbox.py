"""The outbox on Postgres: an event and its deliveries are written in the transaction of the
change they report, only for the enabled endpoints subscribed to it; runs' ends and pauses and
usage thresholds write theirs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.thresholds import record_thresholds
from switchboard.kit.db import SessionMaker
from switchboard.models import Run, WebhookDelivery, WebhookEvent
from switchboard.runs.jobs import EXECUTE
from switchboard.runs.outbound import run_paused
from switchboard.runs.repository import ClaimedRun, NewRun, PendingApproval, Reply, RunRepository
from switchboard.runs.schemas import MultitaskStrategy, Usage
from switchboard.runs.turns import ConversationTurns, TurnEnd, after_turn
from switchboard.webhooks.jobs import DELIVER
from switchboard.webhooks.outbox import QUEUED_LEASE, record_event
from switchboard.webhooks.schemas import WebhookEventType
from switchboard.webhooks.signing import SecretBox
from tests.billing.conftest import new_tenant, record_usage
from tests.billing.test_limits import scratch_plan, subscribe
from tests.support.jobs import SentJobs
from tests.support.members import Member
from tests.webhooks.conftest import add_endpoint, deliveries_of, events_of

RUN_EVENTS = ["run.completed", "run.failed", "run.cancelled", "run.requires_action"]
FAILED = WebhookEventType.run_failed
DATA = {"id": "r-1", "status": "failed", "nested": {"n": [1, 2]}}


async def count_events(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


async def count_deliveries(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0)


# --- record_event -------------------------------------------------------------------------


async def test_no_subscriber_no_event(sessionmaker: SessionMaker, secret_box: SecretBox) -> None:
    tenant = await new_tenant(sessionmaker)
    await add_endpoint(sessionmaker, secret_box, tenant, ["run.completed", "webhook.test"])
    await add_endpoint(sessionmaker, secret_box, tenant, ["run.failed"], enabled=False)
    other = await new_tenant(sessionmaker)
    await add_endpoint(sessionmaker, secret_box, other, ["run.failed"])
    events, deliveries = await count_events(sessionmaker), await count_deliveries(sessionmaker)

    async with sessionmaker() as session, session.begin():
        written = await record_event(session, tenant, FAILED, DATA)

    assert written == []
    assert await events_of(sessionmaker, tenant) == []
    assert await count_events(sessionmaker) == events
    assert await count_deliveries(sessionmaker) == deliveries


async def test_one_event_and_a_delivery_per_enabled_subscriber(
    sessionmaker: SessionMaker, secret_box: SecretBox
) -> None:
    tenant = await new_tenant(sessionmaker)
    only_failed = await add_endpoint(sessionmaker, secret_box, tenant, ["run.failed"])
    both = await add_endpoint(sessionmaker, secret_box, tenant, ["run.completed", "run.failed"])
    await add_endpoint(sessionmaker, secret_box, tenant, ["run.failed"], enabled=False)
    await add_endpoint(sessionmaker, secret_box, tenant, ["run.completed", "webhook.test"])
    other = await new_tenant(sessionmaker)
    await add_endpoint(sessionmaker, secret_box, other, ["run.failed"])

    before = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        written = await record_event(session, tenant, FAILED, DATA)
    after = datetime.now(UTC)

    assert {ref.endpoint_id for ref in written} == {only_failed.id, both.id}
    (event,) = await events_of(sessionmaker, tenant)
    assert (event.type, event.data) == ("run.failed", DATA)
    assert before <= event.created_at <= after
    deliveries = await deliveries_of(sessionmaker, event_id=event.id)
    assert {(d.id, d.endpoint_id) for d in deliveries} == {(r.id, r.endpoint_id) for r in written}
    for delivery in deliveries:
        assert (delivery.tenant_id, delivery.status, delivery.attempts) == (tenant, "queued", 0)
        assert delivery.next_attempt_at == event.created_at
        assert delivery.lease_until == event.created_at + QUEUED_LEASE
        assert delivery.finished_at is None
    assert await events_of(sessionmaker, other) == []
    assert await deliveries_of(sessionmaker, tenant_id=other) == []


async def test_only_names_the_endpoint_whatever_it_subscribes_to(
    sessionmaker: SessionMaker, secret_box: SecretBox
) -> None:
    tenant = await new_tenant(sessionmaker)
    target = await add_endpoint(sessionmaker, secret_box, tenant, ["run.completed"])
    await add_endpoint(sessionmaker, secret_box, tenant, ["webhook.test"])

    async with sessionmaker() as session, session.begin():
        written = await record_event(
            session, tenant, WebhookEventType.webhook_test, {"m": 1}, only=target.id
        )

    assert [ref.endpoint_id for ref in written] == [target.id]
    (event,) = await events_of(sessionmaker, tenant)
    assert [d.endpoint_id for d in await deliveries_of(sessionmaker, event_id=event.id)] == [
        target.id
    ]


async def test_a_rolled_back_change_leaves_no_event(
    sessionmaker: SessionMaker, secret_box: SecretBox
) -> None:
    tenant = await new_tenant(sessionmaker)
    await add_endpoint(sessionmaker, secret_box, tenant, ["run.failed"])
    events, deliveries = await count_events(sessionmaker), await count_deliveries(sessionmaker)

    written = []
    with pytest.raises(RuntimeError, match="the change failed"):
        async with sessionmaker() as session, session.begin():
            written = await record_event(session, tenant, FAILED, DATA)
            # In the transaction, the event is there to be committed with the change...
            assert len(await events_of_in(session, tenant)) == 1
            raise RuntimeError("the change failed")

    # ...and it goes with the change it reported.
    assert len(written) == 1
    assert await events_of(sessionmaker, tenant) == []
    assert await count_events(sessionmaker) == events
    assert await count_deliveries(sessionmaker) == deliveries


async def events_of_in(session: AsyncSession, tenant_id: uuid.UUID) -> list[WebhookEvent]:
    """The tenant's events as the open transaction sees them."""
    query = select(WebhookEvent).where(WebhookEvent.tenant_id == tenant_id)
    return list(await session.scalars(query))


# --- runs ---------------------------------------------------------------------------------

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
USAGE = Usage(input_tokens=120, output_tokens=30, cached_input_tokens=20)


async def started(sessionmaker: SessionMaker, member: Member) -> ClaimedRun:
    """A run in a new conversation, claimed by a worker as the executor claims it."""
    run = NewRun(
        id=uuid.uuid4(),
        tenant_id=member.tenant_id,
        user_id=member.user_id,
        conversation_id=uuid.uuid4(),
        agent="billing",
        message="hello",
    )
    async with sessionmaker() as session, session.begin():
        repository = RunRepository(session)
        await repository.start_in_new_conversation(run, title="hello", now=NOW)
        claimed = await repository.claim(run.id, now=NOW + timedelta(seconds=1), history=10)
    assert claimed is not None
    return claimed


async def end(sessionmaker: SessionMaker, run: ClaimedRun, status: str) -> TurnEnd:
    """The final write of ``status`` and the turn's end in one transaction, as the executor's
    ``_finish_*`` write them."""
    now = NOW + timedelta(seconds=5)
    reply = [Reply(uuid.uuid4(), "hi there", "billing")]
    async with sessionmaker() as session, session.begin():
        repository = RunRepository(session)
        if status == "succeeded":
            ended = await repository.finish_succeeded(
                run, agent="billing", usage=USAGE, replies=reply, now=now
            )
        elif status == "failed":
            ended = await repository.finish_failed(
                run.id, code="provider_error", message="The model failed.", now=now
            )
        else:
            ended = await repository.finish_cancelled(
                run, agent="billing", usage=USAGE, replies=reply, now=now
            )
        assert ended
        return await ConversationTurns(session).end(run.id, run.conversation_id, now)


@pytest.mark.parametrize(
    ("status", "event_type"),
    [
        ("succeeded", "run.completed"),
        ("failed", "run.failed"),
        ("cancelled", "run.cancelled"),
    ],
)
async def test_a_runs_end_writes_its_event_with_the_run_as_the_api_shows_it(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    secret_box: SecretBox,
    owner: Member,
    status: str,
    event_type: str,
) -> None:
    endpoint = await add_endpoint(sessionmaker, secret_box, owner.tenant_id, RUN_EVENTS)
    await add_endpoint(sessionmaker, secret_box, owner.tenant_id, ["usage.threshold_reached"])
    run = await started(sessionmaker, owner)

    turn = await end(sessionmaker, run, status)

    assert not turn.rolled_back
    (event,) = await events_of(sessionmaker, owner.tenant_id)
    assert event.type == event_type
    shown = await webhooks_api.get(f"/api/v1/runs/{run.id}", headers=owner.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == status
    assert event.data == shown.json()
    deliveries = await deliveries_of(sessionmaker, event_id=event.id)
    assert [(d.id, d.endpoint_id) for d in deliveries] == [
        (ref.id, ref.endpoint_id) for ref in turn.deliveries
    ]
    assert [d.endpoint_id for d in deliveries] == [endpoint.id]


async def test_a_failed_runs_event_carries_its_error(
    sessionmaker: SessionMaker, secret_box: SecretBox, owner: Member
) -> None:
    await add_endpoint(sessionmaker, secret_box, owner.tenant_id, ["run.failed"])
    run = await started(sessionmaker, owner)

    await end(sessionmaker, run, "failed")

    (event,) = await events_of(sessionmaker, owner.tenant_id)
    assert event.data["error"] == {"code": "provider_error", "message": "The model failed."}
    assert event.data["id"] == str(run.id)
    assert event.data["finished_at"] is not None


async def test_a_rolled_back_run_reports_cancelled(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    secret_box: SecretBox,
    owner: Member,
) -> None:
    await add_endpoint(sessionmaker, secret_box, owner.tenant_id, RUN_EVENTS)
    run = await started(sessionmaker, owner)
    async with sessionmaker() as session, session.begin():
        await ConversationTurns(session).stop([run.id], MultitaskStrategy.rollback)

    turn = await end(sessionmaker, run, "succeeded")

    assert turn.rolled_back
    (event,) = await events_of(sessionmaker, owner.tenant_id)
    assert event.type == "run.cancelled"
    assert (event.data["id"], event.data["status"]) == (str(run.id), "cancelled")
    assert len(turn.deliveries) == 1
    # The run is gone with its messages; only its event tells of it.
    gone = await webhooks_api.get(f"/api/v1/runs/{run.id}", headers=owner.headers)
    assert gone.status_code == 404
    async with sessionmaker() as session:
        assert await session.get(Run, run.id) is None


async def test_a_runs_end_without_subscribers_writes_nothing(
    sessionmaker: SessionMaker, secret_box: SecretBox, owner: Member
) -> None:
    await add_endpoint(sessionmaker, secret_box, owner.tenant_id, ["run.failed"])
    await add_endpoint(sessionmaker, secret_box, owner.tenant_id, ["run.completed"], enabled=False)
    run = await started(sessionmaker, owner)

    turn = await end(sessionmaker, run, "succeeded")

    assert list(turn.deliveries) == []
    assert await events_of(sessionmaker, owner.tenant_id) == []


async def test_a_runs_end_that_rolls_back_takes_its_event_along(
    sessionmaker: SessionMaker, secret_box: SecretBox, owner: Member
) -> None:
    await add_endpoint(sessionmaker, secret_box, owner.tenant_id, RUN_EVENTS)
    run = await started(sessionmaker, owner)

    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            repository = RunRepository(session)
            assert await repository.finish_failed(run.id, code="x", message="y", now=NOW)
            turn = await ConversationTurns(session).end(run.id, run.conversation_id, NOW)
            assert len(turn.deliveries) == 1
            raise RuntimeError("the commit failed")

    assert await events_of(sessionmaker, owner.tenant_id) == []
    async with sessionmaker() as session:
        stored = await session.get(Run, run.id)
    assert stored is not None
    assert stored.status == "running"


async def test_after_turn_sends_the_next_run_then_the_deliveries(
    sessionmaker: SessionMaker, secret_box: SecretBox, owner: Member
) -> None:
    endpoint = await add_endpoint(sessionmaker, secret_box, owner.tenant_id, RUN_EVENTS)
    run = await started(sessionmaker, owner)
    turn = await end(sessionmaker, run, "succeeded")
    following = uuid.uuid4()
    sent = SentJobs()

    await after_turn(sent, TurnEnd(False, following, turn.deliveries))

    ((delivery_id, endpoint_id),) = [(ref.id, ref.endpoint_id) for ref in turn.deliveries]
    assert endpoint_id == endpoint.id
    assert [(job.name, job.args, job.queue) for job in sent.jobs] == [
        (EXECUTE, (str(following),), sent.jobs[0].queue),
        (DELIVER, (str(delivery_id), str(endpoint.id)), "webhooks"),
    ]


async def test_a_pause_writes_requires_action_with_the_approvals(
    webhooks_api: AsyncClient,
    sessionmaker: SessionMaker,
    secret_box: SecretBox,
    owner: Member,
) -> None:
    """What ``RunExecutor._finish_paused`` writes: the pause and its event, in one
    transaction."""
    await add_endpoint(sessionmaker, secret_box, owner.tenant_id, ["run.requires_action"])
    run = await started(sessionmaker, owner)
    pending = PendingApproval(
        id=uuid.uuid4(), call_id="call-1", tool="refund", arguments='{"amount": 5}', agent="billing"
    )
    approvals = [
        {"id": str(pending.id), "tool": "refund", "arguments": {"amount": 5}, "agent": "billing"}
    ]

    async with sessionmaker() as session, session.begin():
        repository = RunRepository(session)
        assert await repository.pause(run.id, paused="{}", approvals=[pending], now=NOW)
        stored = await repository.get(run.id)
        assert stored is not None
        written = await run_paused(session, stored, approvals)

    (event,) = await events_of(sessionmaker, owner.tenant_id)
    assert event.type == "run.requires_action"
    shown = await webhooks_api.get(f"/api/v1/runs/{run.id}", headers=owner.headers)
    assert shown.json()["status"] == "requires_action"
    assert event.data == {**shown.json(), "approvals": approvals}
    assert [d.id for d in await deliveries_of(sessionmaker, event_id=event.id)] == [
        ref.id for ref in written
    ]


# --- usage thresholds ---------------------------------------------------------------------

DECEMBER = datetime(2026, 12, 15, 12, tzinfo=UTC)


async def test_thresholds_write_their_events_and_send_their_deliveries(
    sessionmaker: SessionMaker, secret_box: SecretBox
) -> None:
    plan = await scratch_plan(sessionmaker, monthly_tokens=100)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan)
    endpoint = await add_endpoint(
        sessionmaker, secret_box, tenant, ["usage.threshold_reached", "run.completed"]
    )
    await add_endpoint(sessionmaker, secret_box, tenant, ["run.completed"])
    async with sessionmaker() as session, session.begin():
        await record_usage(
            session,
            tenant_id=tenant,
            run_id=uuid.uuid4(),
            input_tokens=200,
            output_tokens=50,
            at=DECEMBER,
        )
    sent = SentJobs()

    reached = await record_thresholds(sessionmaker, tenant, DECEMBER, sent)

    assert [threshold.percent for threshold in reached] == [80, 100]
    events = await events_of(sessionmaker, tenant)
    assert {event.type for event in events} == {"usage.threshold_reached"}
    assert sorted((event.data for event in events), key=lambda data: data["percent"]) == [
        {
            "tenant_id": str(tenant),
            "period": "2026-12",
            "percent": percent,
            "tokens": 250,
            "limit_tokens": 100,
        }
        for percent in (80, 100)
    ]
    deliveries = await deliveries_of(sessionmaker, tenant_id=tenant)
    assert {d.event_id for d in deliveries} == {event.id for event in events}
    assert {d.endpoint_id for d in deliveries} == {endpoint.id}
    assert sorted((job.name, job.args, job.queue) for job in sent.jobs) == sorted(
        (DELIVER, (str(d.id), str(endpoint.id)), "webhooks") for d in deliveries
    )

    # Recorded once: a second look finds nothing new and writes no event.
    assert await record_thresholds(sessionmaker, tenant, DECEMBER, sent) == []
    assert len(await events_of(sessionmaker, tenant)) == 2


async def test_thresholds_without_subscribers_write_no_event(
    sessionmaker: SessionMaker, secret_box: SecretBox
) -> None:
    plan = await scratch_plan(sessionmaker, monthly_tokens=100)
    tenant = await new_tenant(sessionmaker)
    await subscribe(sessionmaker, tenant, plan)
    await add_endpoint(sessionmaker, secret_box, tenant, ["run.completed"])
    await add_endpoint(sessionmaker, secret_box, tenant, ["usage.threshold_reached"], enabled=False)
    async with sessionmaker() as session, session.begin():
        await record_usage(
            session,
            tenant_id=tenant,
            run_id=uuid.uuid4(),
            input_tokens=90,
            output_tokens=0,
            at=DECEMBER,
        )
    sent = SentJobs()

    reached = await record_thresholds(sessionmaker, tenant, DECEMBER, sent)

    assert [threshold.percent for threshold in reached] == [80]
    assert await events_of(sessionmaker, tenant) == []
    assert sent.jobs == []
