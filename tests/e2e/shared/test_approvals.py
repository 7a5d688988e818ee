"""Tool approvals end to end: a run stops for a person's decision with no worker holding it,
and goes on from its stored state once decided, through real API processes, a real runs
worker, Redis and Postgres. The billing agent's cancel_subscription is the tool."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import select, update

from switchboard.kit.db import SessionMaker
from switchboard.models import Membership, Run, RunApproval, Subscription
from switchboard.runs.events import EventPublisher, lease_key
from switchboard.runs.sweep import sweep_runs
from switchboard.settings import Settings
from tests.e2e.conftest import chat, sign_up
from tests.support.sse import Frame, collect, frames

CANCEL = "please cancel my subscription"
REFUSED = "The user did not approve this tool call."


async def until_waiting(api: AsyncClient, headers: dict[str, str], run_id: str) -> list[Frame]:
    """The run's events up to its run.requires_action (the stream stays open past it)."""
    url = f"/api/v1/runs/{run_id}/stream"
    seen: list[Frame] = []
    async with api.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        async for frame in frames(response):
            seen.append(frame)
            if frame.event == "run.requires_action":
                break
    return seen


async def stream_from(
    api: AsyncClient, headers: dict[str, str], run_id: str, after: int
) -> list[Frame]:
    url = f"/api/v1/runs/{run_id}/stream"
    headers = {**headers, "Last-Event-ID": str(after)}
    async with api.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        return await collect(response)


async def decide(
    api: AsyncClient, headers: dict[str, str], run_id: str, *decisions: dict[str, Any]
) -> Any:
    return await api.post(
        f"/api/v1/runs/{run_id}/approvals", json={"decisions": list(decisions)}, headers=headers
    )


async def subscribed(committed: SessionMaker, run_id: str) -> uuid.UUID:
    """The run's tenant, given a live subscription; its id."""
    async with committed() as session:
        run = await session.get(Run, uuid.UUID(run_id))
        assert run is not None
        subscription = Subscription(
            tenant_id=run.tenant_id, plan_code="team", seats=1, status="active"
        )
        session.add(subscription)
        await session.commit()
        return subscription.id


async def subscription_of(committed: SessionMaker, subscription_id: uuid.UUID) -> Subscription:
    async with committed() as session:
        found = await session.get(Subscription, subscription_id)
        assert found is not None
        return found


async def waiting_run(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> tuple[str, uuid.UUID, list[Frame]]:
    """A chat asking to cancel the subscription, stopped for approval: its run id, the
    tenant's subscription and the events up to the pause."""
    started = await chat(apis[0], user, CANCEL)
    run_id = str(started["run_id"])
    subscription = await subscribed(committed, run_id)
    return run_id, subscription, await until_waiting(apis[0], user, run_id)


def numbered(seen: list[Frame]) -> list[int | None]:
    return [frame.id for frame in seen]


async def test_an_approved_call_runs_on_resume_and_the_stream_is_one_sequence(
    apis: tuple[AsyncClient, AsyncClient],
    user: dict[str, str],
    committed: SessionMaker,
    redis: Redis,
) -> None:
    started = await chat(apis[0], user, CANCEL)
    run_id = str(started["run_id"])
    subscription = await subscribed(committed, run_id)
    url = f"/api/v1/runs/{run_id}/stream"
    live: list[Frame] = []
    # One stream open across the pause: the decision is sent from inside it.
    async with apis[0].stream("GET", url, headers=user) as response:
        async for frame in frames(response):
            live.append(frame)
            if frame.event == "run.requires_action":
                async with committed() as session:
                    run = await session.get(Run, uuid.UUID(run_id))
                    assert run is not None
                    assert run.status == "requires_action"
                    assert run.paused is not None
                # The worker let go of the run: no lease is held while it waits.
                assert not await redis.exists(lease_key(run_id))
                before = await subscription_of(committed, subscription)
                assert before.cancel_at_period_end is False
                (approval,) = frame.data["approvals"]
                assert approval["tool"] == "cancel_subscription"
                assert approval["arguments"] == {}
                assert approval["agent"] == "billing"
                answered = await decide(
                    apis[1], user, run_id, {"id": approval["id"], "approve": True}
                )
                assert answered.status_code == 202, answered.text

    assert [frame.event for frame in live[:5]] == [
        "run.queued",
        "run.started",
        "agent.updated",
        "tool.called",
        "run.requires_action",
    ]
    assert live[5].event == "tool.output"
    assert live[5].data["tool"] == "cancel_subscription"
    assert live[5].data["output"].startswith("Cancelled: the subscription ends")
    assert [frame.event for frame in live[-2:]] == ["message.completed", "run.completed"]
    assert numbered(live) == list(range(1, len(live) + 1))  # gap-free across the pause
    assert live[-2].data["content"].startswith(CANCEL + " Cancelled:")
    changed = await subscription_of(committed, subscription)
    assert changed.cancel_at_period_end is True
    assert changed.sync_version == before.sync_version + 1  # a Stripe sync was buffered

    # Read again from the start: every event once, in order, the same as live.
    again = await stream_from(apis[0], user, run_id, 0)
    assert [(f.id, f.event, f.data) for f in again] == [(f.id, f.event, f.data) for f in live]

    # A second decision on the same call: 409, nothing changes.
    second = await decide(apis[0], user, run_id, {"id": approval["id"], "approve": False})
    assert second.status_code == 409
    assert second.json()["code"] == "run.approval_decided"
    async with committed() as session:
        row = (await session.scalars(select(RunApproval).where(RunApproval.run_id == run_id))).one()
        assert row.approved is True
        run = await session.get(Run, uuid.UUID(run_id))
        assert run is not None
        assert run.status == "succeeded"
        assert run.input_tokens > 0


async def test_a_rejected_call_returns_the_refusal_to_the_agent(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    run_id, subscription, seen = await waiting_run(apis, user, committed)
    approval = seen[-1].data["approvals"][0]

    answered = await decide(
        apis[0], user, run_id, {"id": approval["id"], "approve": False, "reason": "not now"}
    )
    assert answered.status_code == 202, answered.text
    rest = await stream_from(apis[0], user, run_id, seen[-1].id or 0)

    output = next(frame for frame in rest if frame.event == "tool.output")
    assert output.data["output"] == f"{REFUSED} Reason: not now"
    assert rest[-1].event == "run.completed"
    assert numbered(seen + rest) == list(range(1, len(seen) + len(rest) + 1))
    assert (await subscription_of(committed, subscription)).cancel_at_period_end is False


async def test_a_members_approval_is_refused_by_the_tool(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    run_id, subscription, seen = await waiting_run(apis, user, committed)
    async with committed() as session:
        run = await session.get(Run, uuid.UUID(run_id))
        assert run is not None
        await session.execute(
            update(Membership)
            .where(Membership.user_id == run.user_id, Membership.tenant_id == run.tenant_id)
            .values(role="member")
        )
        await session.commit()

    approval = seen[-1].data["approvals"][0]
    assert (
        await decide(apis[0], user, run_id, {"id": approval["id"], "approve": True})
    ).status_code == 202
    rest = await stream_from(apis[0], user, run_id, seen[-1].id or 0)

    output = next(frame for frame in rest if frame.event == "tool.output")
    assert output.data["output"].startswith("Not cancelled: only an owner, admin or billing")
    assert "member" in output.data["output"]
    assert rest[-1].event == "run.completed"
    assert (await subscription_of(committed, subscription)).cancel_at_period_end is False


async def test_bad_decisions_are_refused_and_record_nothing(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    run_id, _, seen = await waiting_run(apis, user, committed)
    approval = seen[-1].data["approvals"][0]

    unknown = await decide(apis[0], user, run_id, {"id": str(uuid.uuid4()), "approve": True})
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "run.unknown_approval"
    twice = await decide(
        apis[0],
        user,
        run_id,
        {"id": approval["id"], "approve": True},
        {"id": approval["id"], "approve": False},
    )
    assert twice.status_code == 422
    stranger = await sign_up(apis[0])
    foreign = await decide(apis[0], stranger, run_id, {"id": approval["id"], "approve": True})
    assert foreign.status_code == 404
    async with committed() as session:
        row = (await session.scalars(select(RunApproval).where(RunApproval.run_id == run_id))).one()
        assert row.approved is None
        run = await session.get(Run, uuid.UUID(run_id))
        assert run is not None
        assert run.status == "requires_action"

    plain = await chat(apis[0], user, "hello there")
    await stream_from(apis[0], user, str(plain["run_id"]), 0)
    idle = await decide(
        apis[0], user, str(plain["run_id"]), {"id": approval["id"], "approve": True}
    )
    assert idle.status_code == 409
    assert idle.json()["code"] == "run.not_waiting"


async def test_decisions_racing_from_two_processes_resume_the_run_once(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    run_id, subscription, seen = await waiting_run(apis, user, committed)
    approval = seen[-1].data["approvals"][0]

    answers = await asyncio.gather(
        decide(apis[0], user, run_id, {"id": approval["id"], "approve": True}),
        decide(apis[1], user, run_id, {"id": approval["id"], "approve": False}),
    )

    assert sorted(answer.status_code for answer in answers) == [202, 409]
    rest = await stream_from(apis[0], user, run_id, seen[-1].id or 0)
    assert [frame.event for frame in rest].count("tool.output") == 1
    assert [frame.event for frame in rest].count("run.completed") == 1
    winner = answers[0] if answers[0].status_code == 202 else answers[1]
    approved = winner is answers[0]
    assert (await subscription_of(committed, subscription)).cancel_at_period_end is approved


async def test_the_conversations_turn_waits_for_the_decision(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    run_id, _, seen = await waiting_run(apis, user, committed)
    conversation = seen[0].data["conversation_id"]
    later = await chat(apis[1], user, "hello again", conversation_id=conversation)
    async with committed() as session:
        waiting = await session.get(Run, uuid.UUID(later["run_id"]))
        assert waiting is not None
        assert (waiting.status, waiting.pending_message) == ("queued", "hello again")

    approval = seen[-1].data["approvals"][0]
    assert (
        await decide(apis[0], user, run_id, {"id": approval["id"], "approve": True})
    ).status_code == 202
    after = await stream_from(apis[0], user, str(later["run_id"]), 0)

    assert after[-1].event == "run.completed"
    read = await apis[0].get(f"/api/v1/conversations/{conversation}", headers=user)
    said = [(m["role"], m["content"].split(" Cancelled:")[0]) for m in read.json()["messages"]]
    assert said == [
        ("user", CANCEL),
        ("assistant", CANCEL),
        ("user", "hello again"),
        ("assistant", "hello again"),
    ]


async def test_a_cancel_ends_a_waiting_run_and_passes_its_turn(
    apis: tuple[AsyncClient, AsyncClient], user: dict[str, str], committed: SessionMaker
) -> None:
    run_id, subscription, seen = await waiting_run(apis, user, committed)

    cancelled = await apis[1].post(f"/api/v1/runs/{run_id}/cancel", headers=user)
    assert cancelled.status_code == 202
    rest = await stream_from(apis[0], user, run_id, seen[-1].id or 0)

    assert [frame.event for frame in rest] == ["run.cancelled"]
    assert rest[0].id == (seen[-1].id or 0) + 1
    async with committed() as session:
        run = await session.get(Run, uuid.UUID(run_id))
        assert run is not None
        assert run.status == "cancelled"
    assert (await subscription_of(committed, subscription)).cancel_at_period_end is False
    approval = seen[-1].data["approvals"][0]
    late = await decide(apis[0], user, run_id, {"id": approval["id"], "approve": True})
    assert late.status_code == 409
    assert late.json()["code"] == "run.not_waiting"
    # The conversation is free again: a chat into it runs at once.
    conversation = seen[0].data["conversation_id"]
    after = await chat(apis[0], user, "hello again", conversation_id=conversation)
    assert (await stream_from(apis[0], user, str(after["run_id"]), 0))[-1].event == "run.completed"


async def test_an_undecided_run_expires_with_approval_expired(
    apis: tuple[AsyncClient, AsyncClient],
    user: dict[str, str],
    committed: SessionMaker,
    redis: Redis,
    settings: Settings,
) -> None:
    run_id, _, seen = await waiting_run(apis, user, committed)

    # The sweep as beat runs it, with a timeout every waiting run has outlived.
    runs = settings.runs.model_copy(update={"approval_timeout_seconds": 0})
    report = await sweep_runs(committed, redis, EventPublisher.for_settings(redis, runs), runs)

    assert report.approvals_expired >= 1
    rest = await stream_from(apis[0], user, run_id, seen[-1].id or 0)
    assert [frame.event for frame in rest] == ["run.failed"]
    assert rest[0].data["error"]["code"] == "approval_expired"
    read = await apis[0].get(f"/api/v1/runs/{run_id}", headers=user)
    assert read.json()["status"] == "failed"
