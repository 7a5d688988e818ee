"""The stream slots a request takes come back when its unit of work does not commit: the
response that would give them back is never sent (no worker runs the runs here)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import func, select

from api.deps import get_unit_of_work
from switchboard.kit.db import SessionMaker
from switchboard.kit.uow import UnitOfWork
from switchboard.models import Run, Tenant
from switchboard.runs.admission import slots_key
from switchboard.runs.stream_slots import streams_key, ticket_streams_key
from tests.support.members import Member, NewMember
from tests.support.plans import put_on_plan


def fail_commits(app: FastAPI, sessionmaker: SessionMaker, tenant_id: uuid.UUID) -> None:
    """From now on each request's commit fails in Postgres, after its route has returned."""

    async def unit_of_work_whose_commit_fails() -> AsyncIterator[UnitOfWork]:
        async with UnitOfWork(sessionmaker, app.state.job_sender) as uow:
            yield uow
            uow.session.add(Tenant(id=tenant_id, name="a tenant that already exists"))

    app.dependency_overrides[get_unit_of_work] = unit_of_work_whose_commit_fails


def _jti(stream_url: str) -> str:
    payload = stream_url.partition("?ticket=")[2].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


async def _limited(new_member: NewMember, sessionmaker: SessionMaker) -> Member:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id, open_streams_per_user=1)
    return alice


async def test_a_stream_whose_commit_fails_gives_its_user_and_ticket_slots_back(
    app: FastAPI,
    client: AsyncClient,
    new_member: NewMember,
    sessionmaker: SessionMaker,
    redis: Redis,
) -> None:
    alice = await _limited(new_member, sessionmaker)
    accepted = (
        await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
    ).json()
    fail_commits(app, sessionmaker, alice.tenant_id)

    failed = await client.get(accepted["stream_url"])

    assert failed.status_code == 409  # the commit's insert broke the tenants' primary key
    assert await redis.zcard(streams_key(alice.user_id)) == 0
    assert await redis.zcard(ticket_streams_key(_jti(accepted["stream_url"]))) == 0


async def test_a_chat_stream_whose_commit_fails_gives_its_slot_back(
    app: FastAPI,
    client: AsyncClient,
    new_member: NewMember,
    sessionmaker: SessionMaker,
    redis: Redis,
) -> None:
    alice = await _limited(new_member, sessionmaker)
    fail_commits(app, sessionmaker, alice.tenant_id)

    failed = await client.post("/api/v1/chat/stream", json={"message": "hi"}, headers=alice.headers)

    assert failed.status_code == 409
    assert await redis.zcard(streams_key(alice.user_id)) == 0
    assert await redis.zcard(slots_key(alice.tenant_id)) == 0
    async with sessionmaker() as session:
        runs = await session.scalar(
            select(func.count()).select_from(Run).where(Run.tenant_id == alice.tenant_id)
        )
    assert runs == 0


async def test_a_refused_chat_stream_gives_its_slot_back(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, redis: Redis
) -> None:
    alice = await _limited(new_member, sessionmaker)

    refused = await client.post(
        "/api/v1/chat/stream",
        json={"message": "hi", "conversation_id": str(uuid.uuid4())},
        headers=alice.headers,
    )

    assert (refused.status_code, refused.json()["code"]) == (404, "conversation.not_found")
    assert await redis.zcard(streams_key(alice.user_id)) == 0
