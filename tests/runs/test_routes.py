"""The run routes on their own: what they store, answer and refuse (no worker runs here)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import select

from switchboard.kit.db import SessionMaker
from switchboard.models import Message, Run
from switchboard.runs.events import cancel_key, stream_key
from switchboard.runs.resume import LAST_SEQ
from switchboard.settings import Settings
from tests.support.members import NewMember


async def test_chat_stores_a_queued_run_and_answers_with_its_stream(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, redis: Redis
) -> None:
    alice = await new_member()

    response = await client.post(
        "/api/v1/chat", json={"message": "hi there"}, headers=alice.headers
    )

    assert response.status_code == 202
    body = response.json()
    run_id = body["run_id"]
    assert body["status"] == "queued"
    assert body["stream_url"].startswith(f"/api/v1/runs/{run_id}/stream?ticket=")
    async with sessionmaker() as session:
        run = await session.get(Run, uuid.UUID(run_id))
        assert run is not None
        assert (run.status, run.tenant_id, run.user_id) == (
            "queued",
            alice.tenant_id,
            alice.user_id,
        )
        assert str(run.conversation_id) == body["conversation_id"]
        messages = (
            await session.scalars(
                select(Message).where(Message.conversation_id == run.conversation_id)
            )
        ).all()
    assert [(message.role, message.content) for message in messages] == [("user", "hi there")]
    assert await redis.xlen(stream_key(run_id)) == 1  # run.queued

    read = await client.get(f"/api/v1/runs/{run_id}", headers=alice.headers)
    assert read.status_code == 200
    assert read.json()["status"] == "queued"
    assert read.json()["usage"] == {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0}


async def test_a_run_is_only_its_owners(client: AsyncClient, new_member: NewMember) -> None:
    alice = await new_member()
    colleague = await new_member(tenant_id=alice.tenant_id, role="admin")
    accepted = await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
    run_id = accepted.json()["run_id"]

    read = await client.get(f"/api/v1/runs/{run_id}", headers=colleague.headers)
    cancel = await client.post(f"/api/v1/runs/{run_id}/cancel", headers=colleague.headers)
    stream = await client.get(f"/api/v1/runs/{run_id}/stream", headers=colleague.headers)
    reply = await client.post(
        "/api/v1/chat",
        json={"message": "mine now", "conversation_id": accepted.json()["conversation_id"]},
        headers=colleague.headers,
    )

    assert [read.status_code, cancel.status_code, stream.status_code] == [404, 404, 404]
    assert read.json()["code"] == "run.not_found"
    assert (reply.status_code, reply.json()["code"]) == (404, "conversation.not_found")


async def test_chat_refuses_what_it_cannot_run(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker, settings: Settings
) -> None:
    alice = await new_member()
    limit = settings.runs.max_message_chars

    too_long = await client.post(
        "/api/v1/chat", json={"message": "x" * (limit + 1)}, headers=alice.headers
    )
    unknown = await client.post(
        "/api/v1/chat", json={"message": "hi", "agent": "nobody"}, headers=alice.headers
    )
    blank = await client.post("/api/v1/chat", json={"message": "   "}, headers=alice.headers)
    anonymous = await client.post("/api/v1/chat", json={"message": "hi"})

    assert (too_long.status_code, too_long.json()["code"]) == (413, "run.message_too_large")
    assert unknown.status_code == 422
    assert blank.status_code == 422
    assert anonymous.status_code == 401
    async with sessionmaker() as session:
        assert (
            await session.scalars(select(Run).where(Run.tenant_id == alice.tenant_id))
        ).all() == []


async def test_cancel_raises_the_flag_of_a_queued_run(
    client: AsyncClient, new_member: NewMember, redis: Redis
) -> None:
    alice = await new_member()
    run_id = (
        await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
    ).json()["run_id"]

    response = await client.post(f"/api/v1/runs/{run_id}/cancel", headers=alice.headers)

    assert response.status_code == 202
    assert await redis.get(cancel_key(run_id)) == b"1"


async def test_a_stream_opens_only_with_its_own_ticket_or_the_owners_token(
    client: AsyncClient, new_member: NewMember
) -> None:
    alice = await new_member()
    first = (await client.post("/api/v1/chat", json={"message": "a"}, headers=alice.headers)).json()
    second = (
        await client.post("/api/v1/chat", json={"message": "b"}, headers=alice.headers)
    ).json()
    ticket = first["stream_url"].split("ticket=")[1]

    wrong_run = await client.get(f"/api/v1/runs/{second['run_id']}/stream?ticket={ticket}")
    forged = await client.get(f"/api/v1/runs/{first['run_id']}/stream?ticket=not-a-token")
    anonymous = await client.get(f"/api/v1/runs/{first['run_id']}/stream")
    bad_resume = await client.get(
        f"/api/v1/runs/{first['run_id']}/stream",
        headers={**alice.headers, "Last-Event-ID": "-1"},
    )

    assert [wrong_run.status_code, forged.status_code, anonymous.status_code] == [401, 401, 401]
    assert (bad_resume.status_code, bad_resume.json()["code"]) == (
        422,
        "run.invalid_last_event_id",
    )


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


# int() takes every one of these; a Last-Event-ID is ASCII digits and no more than a run holds.
NOT_AN_EVENT_ID = [
    "-1",
    "+1",
    "1_000",
    "١٢",
    "²",
    " 1",
    "1\t",
    "0x10",
    "1.0",
    "1e3",
    str(LAST_SEQ + 1),
    "99999999999999999999",
    # Leading zeros are allowed, but not without end: int() refuses more than 4300 digits.
    pytest.param("0" * 5000 + "1", id="5000 zeros then 1"),
    pytest.param("0" * 64 + "1", id="64 zeros then 1"),
]


@pytest.mark.parametrize("raw", NOT_AN_EVENT_ID)
async def test_a_resume_from_anything_but_an_event_number_is_refused(
    client: AsyncClient, new_member: NewMember, raw: str
) -> None:
    alice = await new_member()
    run_id = (
        await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
    ).json()["run_id"]
    url = f"/api/v1/runs/{run_id}/stream"

    refusals = [await client.get(url, params={"last_event_id": raw}, headers=alice.headers)]
    # The HTTP layer strips blanks around a header's value, which leaves " 1" a good header.
    if raw == raw.strip():
        header = {**alice.headers, "Last-Event-ID": raw.encode()}
        refusals.append(await client.get(url, headers=header))

    code = "validation_error" if len(raw) > 64 else "run.invalid_last_event_id"
    for refused in refusals:
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == code


async def test_a_fresh_stream_ticket_opens_only_the_callers_run_for_a_minute(
    client: AsyncClient, new_member: NewMember, settings: Settings
) -> None:
    alice = await new_member()
    colleague = await new_member(tenant_id=alice.tenant_id, role="admin")
    stranger = await new_member()
    accepted = (
        await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)
    ).json()
    run_id = accepted["run_id"]
    url = f"/api/v1/runs/{run_id}/stream-ticket"

    fresh = await client.post(url, headers=alice.headers)
    not_hers = [
        await client.post(url, headers=colleague.headers),
        await client.post(url, headers=stranger.headers),
        await client.post(f"/api/v1/runs/{uuid.uuid4()}/stream-ticket", headers=alice.headers),
    ]
    anonymous = await client.post(url)

    assert fresh.status_code == 200
    body = fresh.json()
    path, _, ticket = body["stream_url"].partition("?ticket=")
    assert path == f"/api/v1/runs/{run_id}/stream"
    claims = _claims(ticket)
    assert (claims["run"], claims["sub"], claims["tid"]) == (
        run_id,
        str(alice.user_id),
        str(alice.tenant_id),
    )
    assert claims["jti"] != _claims(accepted["stream_url"].partition("?ticket=")[2])["jti"]
    assert body["expires_at"].endswith("Z")
    assert datetime.fromisoformat(body["expires_at"]) == datetime.fromtimestamp(claims["exp"], UTC)
    assert claims["exp"] - claims["iat"] == settings.auth.stream_ticket_ttl_seconds == 60
    assert [(r.status_code, r.json()["code"]) for r in not_hers] == [(404, "run.not_found")] * 3
    assert anonymous.status_code == 401
    # A ticket opens a stream and nothing else: it is no Bearer token.
    as_bearer = await client.post(url, headers={"Authorization": f"Bearer {ticket}"})
    assert as_bearer.status_code == 401


async def test_the_ticket_in_a_chats_stream_url_lives_a_minute(
    client: AsyncClient, new_member: NewMember
) -> None:
    alice = await new_member()
    accepted = await client.post("/api/v1/chat", json={"message": "hi"}, headers=alice.headers)

    claims = _claims(accepted.json()["stream_url"].partition("?ticket=")[2])

    assert claims["exp"] - claims["iat"] == 60
