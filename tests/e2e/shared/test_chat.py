"""Chat through API, queue, worker, Redis and SSE, parsed by a real HTTP client."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
from httpx import AsyncClient
from redis.asyncio import Redis

from switchboard.auth.keyring import KeySnapshot
from switchboard.runs.events import stream_key
from tests.support.auth import forge
from tests.support.metrics import exposed
from tests.support.sse import Frame, collect, frames

TERMINAL = {"run.completed", "run.failed", "run.cancelled"}


async def chat_stream(api: AsyncClient, headers: dict[str, str], **body: object) -> list[Frame]:
    async with api.stream("POST", "/api/v1/chat/stream", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        return await collect(response)


def check_contract(frames: list[Frame]) -> None:
    assert [frame.id for frame in frames] == list(range(1, len(frames) + 1))
    run_ids = {frame.data["run_id"] for frame in frames}
    assert len(run_ids) == 1
    assert all(frame.data["seq"] == frame.id for frame in frames)
    assert frames[0].event == "run.queued"
    assert [frame.event in TERMINAL for frame in frames].count(True) == 1
    assert frames[-1].event in TERMINAL


async def test_chat_stream_relays_every_event_and_stores_the_reply(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    message = "hello there from the other side"
    frames = await chat_stream(api, alice, message=message)

    check_contract(frames)
    kinds = [frame.event for frame in frames]
    assert kinds[:2] == ["run.queued", "run.started"]
    assert kinds[-2:] == ["message.completed", "run.completed"]
    deltas = "".join(frame.data["delta"] for frame in frames if frame.event == "message.delta")
    completed = next(frame for frame in frames if frame.event == "message.completed")
    assert deltas == completed.data["content"] == message
    assert completed.data["incomplete"] is False
    assert kinds.count("message.delta") >= len(message.split())
    usage = frames[-1].data["usage"]
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0

    run_id = frames[0].data["run_id"]
    run = (await api.get(f"/api/v1/runs/{run_id}", headers=alice)).json()
    assert run["status"] == "succeeded"
    assert run["usage"] == usage
    assert run["error"] is None
    conversation = (
        await api.get(f"/api/v1/conversations/{run['conversation_id']}", headers=alice)
    ).json()
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("user", message),
        ("assistant", message),
    ]
    assert conversation["messages"][1]["id"] == completed.data["message_id"]
    # The finished run's tokens are metered for billing, in the same transaction.
    metered = (await api.get("/api/v1/billing/usage", headers=alice)).json()
    assert (metered["runs"], metered["input_tokens"], metered["output_tokens"]) == (
        1,
        usage["input_tokens"],
        usage["output_tokens"],
    )


async def test_billing_words_hand_off_to_the_billing_agent(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    frames = await chat_stream(api, alice, message="where is my invoice")

    updates = [frame.data["agent"] for frame in frames if frame.event == "agent.updated"]
    assert updates == ["billing"]
    completed = next(frame for frame in frames if frame.event == "message.completed")
    assert completed.data["agent"] == "billing"


async def test_tool_calls_are_streamed(api: AsyncClient, alice: dict[str, str]) -> None:
    frames = await chat_stream(api, alice, message="what time is it")

    called = next(frame for frame in frames if frame.event == "tool.called")
    output = next(frame for frame in frames if frame.event == "tool.output")
    assert called.data["tool"] == output.data["tool"] == "current_time"
    assert called.data["agent"] == "triage"
    assert output.data["output"].startswith("20")
    check_contract(frames)


def _expired_copy(ticket: str, keys: KeySnapshot) -> str:
    """The same ticket, validly signed by our key, but past its expiry (and the leeway)."""
    header, payload, _ = ticket.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(iat=claims["iat"] - 3600, nbf=claims["nbf"] - 3600, exp=claims["iat"] - 600)
    head = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return forge(head, claims, keys.signing_key)


async def test_an_expired_ticket_opens_nothing(
    api: AsyncClient, alice: dict[str, str], committed_keys: KeySnapshot
) -> None:
    body = (await api.post("/api/v1/chat", json={"message": "one"}, headers=alice)).json()
    url, ticket = body["stream_url"].split("ticket=")

    fresh = await api.get(f"{url}ticket={ticket}", headers={"Last-Event-ID": "999"})
    expired = await api.get(f"{url}ticket={_expired_copy(ticket, committed_keys)}")

    assert fresh.status_code == 200  # the untouched ticket works: only the expiry differs
    assert expired.status_code == 401
    assert expired.json()["code"] == "auth.invalid_token"


async def test_chat_returns_a_ticketed_stream_url(api: AsyncClient, alice: dict[str, str]) -> None:
    accepted = await api.post("/api/v1/chat", json={"message": "one two three"}, headers=alice)
    assert accepted.status_code == 202
    body = accepted.json()
    assert body["status"] == "queued"
    assert "ticket=" in body["stream_url"]

    # No Authorization header: the ticket alone opens this run's stream.
    async with api.stream("GET", body["stream_url"]) as response:
        assert response.status_code == 200
        frames = await collect(response)
    check_contract(frames)
    assert frames[0].data["run_id"] == body["run_id"]


async def test_resume_with_last_event_id_delivers_each_event_once(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    words = " ".join(f"word{i}" for i in range(40))
    accepted = (await api.post("/api/v1/chat", json={"message": words}, headers=alice)).json()
    url = f"/api/v1/runs/{accepted['run_id']}/stream"

    async with api.stream("GET", url, headers=alice) as response:
        first = await collect(response, stop_after=5)
    async with api.stream(
        "GET", url, headers={**alice, "Last-Event-ID": str(first[-1].id)}
    ) as response:
        rest = await collect(response)

    check_contract(first + rest)
    async with api.stream("GET", f"{url}?last_event_id=3", headers=alice) as response:
        after_finish = await collect(response)
    assert [frame.id for frame in after_finish] == [frame.id for frame in (first + rest)[3:]]


async def test_finished_run_answers_from_postgres_once_its_buffer_expired(
    api: AsyncClient, alice: dict[str, str], redis: Redis
) -> None:
    frames = await chat_stream(api, alice, message="short one")
    run_id = frames[0].data["run_id"]
    await redis.delete(stream_key(run_id))

    async with api.stream(
        "GET", f"/api/v1/runs/{run_id}/stream", headers={**alice, "Last-Event-ID": "2"}
    ) as response:
        replayed = await collect(response)

    assert [frame.event for frame in replayed] == ["run.completed"]
    assert replayed[0].data["usage"] == frames[-1].data["usage"]


async def test_cancel_ends_the_stream_and_keeps_what_was_said(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    long_message = " ".join(f"w{i}" for i in range(2000))
    accepted = (
        await api.post("/api/v1/chat", json={"message": long_message}, headers=alice)
    ).json()
    url = f"/api/v1/runs/{accepted['run_id']}/stream"

    seen: list[Frame] = []
    async with api.stream("GET", url, headers=alice) as response:
        async for frame in frames(response):
            seen.append(frame)
            if frame.event == "message.delta" and len(seen) == 3:
                cancelled = await api.post(
                    f"/api/v1/runs/{accepted['run_id']}/cancel", headers=alice
                )
                assert cancelled.status_code == 202

    assert seen[-1].event == "run.cancelled"
    # What the client was sent, and nothing more, is kept: one message cut short.
    said = "".join(frame.data["delta"] for frame in seen if frame.event == "message.delta")
    completed = seen[-2]
    assert completed.event == "message.completed"
    assert (completed.data["content"], completed.data["incomplete"]) == (said, True)
    assert 0 < len(said) < len(long_message)
    run = (await api.get(f"/api/v1/runs/{accepted['run_id']}", headers=alice)).json()
    assert run["status"] == "cancelled"
    conversation = (
        await api.get(f"/api/v1/conversations/{accepted['conversation_id']}", headers=alice)
    ).json()
    assert [(m["role"], m["content"], m["incomplete"]) for m in conversation["messages"]] == [
        ("user", long_message, False),
        ("assistant", said, True),
    ]
    assert conversation["messages"][1]["id"] == completed.data["message_id"]
    # The offline model reports no usage for the call the cancel cut: it is estimated at 4
    # characters a token, of what the call read and of what it wrote.
    estimated = {
        "input_tokens": -(-len(long_message) // 4),
        "output_tokens": -(-len(said) // 4),
        "cached_input_tokens": 0,
    }
    assert run["usage"] == estimated
    metered = (await api.get("/api/v1/billing/usage", headers=alice)).json()
    assert (metered["runs"], metered["input_tokens"], metered["output_tokens"]) == (
        1,
        estimated["input_tokens"],
        estimated["output_tokens"],
    )
    again = await api.post(f"/api/v1/runs/{accepted['run_id']}/cancel", headers=alice)
    assert again.status_code == 409


async def test_conversations_are_listed_paged_and_deleted(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    first = await chat_stream(api, alice, message="first conversation")
    conversation_id = first[0].data["conversation_id"]
    await chat_stream(api, alice, message="second turn", conversation_id=conversation_id)
    await chat_stream(api, alice, message="another conversation")

    page1 = (await api.get("/api/v1/conversations?limit=1", headers=alice)).json()
    page2 = (
        await api.get(f"/api/v1/conversations?limit=1&cursor={page1['next_cursor']}", headers=alice)
    ).json()

    assert page1["items"][0]["title"] == "another conversation"
    assert page2["items"][0]["id"] == conversation_id
    assert page2["next_cursor"] is None
    detail = (await api.get(f"/api/v1/conversations/{conversation_id}", headers=alice)).json()
    assert [m["content"] for m in detail["messages"]] == [
        "first conversation",
        "first conversation",
        "second turn",
        "second turn",
    ]
    deleted = await api.delete(f"/api/v1/conversations/{conversation_id}", headers=alice)
    assert deleted.status_code == 204
    gone = await api.get(f"/api/v1/conversations/{conversation_id}", headers=alice)
    assert gone.status_code == 404


async def test_agents_are_listed_with_their_own_tools(
    api: AsyncClient, alice: dict[str, str]
) -> None:
    agents = {
        agent["name"]: agent for agent in (await api.get("/api/v1/agents", headers=alice)).json()
    }

    assert set(agents) == {"triage", "billing", "support"}
    assert sorted(agents["triage"]["handoffs"]) == ["billing", "support"]
    assert "usage_summary" in agents["billing"]["tools"]
    assert "usage_summary" not in agents["support"]["tools"]
    assert "search_conversations" in agents["support"]["tools"]


async def test_bad_input_gets_clear_problems(
    api: AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    frames = await chat_stream(api, alice, message="alice private words")
    run_id = frames[0].data["run_id"]
    conversation_id = frames[0].data["conversation_id"]
    accepted = (await api.post("/api/v1/chat", json={"message": "x y"}, headers=alice)).json()
    other = (await api.post("/api/v1/chat", json={"message": "z"}, headers=alice)).json()
    ticket_for_other = other["stream_url"].split("ticket=")[1]

    cases = {
        "empty": (await api.post("/api/v1/chat", json={"message": "  "}, headers=alice), 422),
        "too long": (
            await api.post("/api/v1/chat", json={"message": "a" * 32_001}, headers=alice),
            413,
        ),
        "unknown conversation": (
            await api.post(
                "/api/v1/chat",
                json={"message": "hi", "conversation_id": str(uuid.uuid4())},
                headers=alice,
            ),
            404,
        ),
        "someone else's conversation": (
            await api.post(
                "/api/v1/chat",
                json={"message": "hi", "conversation_id": conversation_id},
                headers=bob,
            ),
            404,
        ),
        "unknown agent": (
            await api.post(
                "/api/v1/chat", json={"message": "hi", "agent": "nobody"}, headers=alice
            ),
            422,
        ),
        "someone else's run": (await api.get(f"/api/v1/runs/{run_id}", headers=bob), 404),
        "read someone else's conversation": (
            await api.get(f"/api/v1/conversations/{conversation_id}", headers=bob),
            404,
        ),
        "delete someone else's conversation": (
            await api.delete(f"/api/v1/conversations/{conversation_id}", headers=bob),
            404,
        ),
        "cancel someone else's run": (
            await api.post(f"/api/v1/runs/{accepted['run_id']}/cancel", headers=bob),
            404,
        ),
        "someone else's stream": (
            await api.get(f"/api/v1/runs/{run_id}/stream", headers=bob),
            404,
        ),
        "cancel a finished run": (
            await api.post(f"/api/v1/runs/{run_id}/cancel", headers=alice),
            409,
        ),
        "ticket of another run": (
            await api.get(f"/api/v1/runs/{accepted['run_id']}/stream?ticket={ticket_for_other}"),
            401,
        ),
        "forged ticket": (
            await api.get(f"/api/v1/runs/{run_id}/stream?ticket={ticket_for_other[:-3]}abc"),
            401,
        ),
        "access token as ticket": (
            await api.get(
                f"/api/v1/runs/{run_id}/stream?ticket={alice['Authorization'].split()[1]}"
            ),
            401,
        ),
        "bad Last-Event-ID": (
            await api.get(
                f"/api/v1/runs/{run_id}/stream", headers={**alice, "Last-Event-ID": "nope"}
            ),
            422,
        ),
        "no token": (await api.post("/api/v1/chat", json={"message": "hi"}), 401),
    }
    for name, (response, status) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
    # Bob's attempts changed nothing of Alice's.
    kept = await api.get(f"/api/v1/conversations/{conversation_id}", headers=alice)
    assert kept.status_code == 200


async def test_runs_and_streams_are_measured(
    api: AsyncClient, alice: dict[str, str], runs_worker: str
) -> None:
    frames = await chat_stream(api, alice, message="count me in")
    assert frames[-1].event == "run.completed"

    worker = httpx.get(runs_worker, timeout=5).text
    assert exposed(worker, "runs_started_total", agent="triage") >= 1
    assert exposed(worker, "runs_finished_total", status="succeeded") >= 1
    assert exposed(worker, "runs_queue_wait_seconds_count") >= 1
    assert exposed(worker, "runs_time_to_first_token_seconds_count") >= 1
    assert exposed(worker, "runs_events_published_total", event="message.delta") >= 3
    assert exposed(worker, "runs_active") == 0

    relay = (await api.get("/metrics")).text
    assert exposed(relay, "runs_events_relayed_total") >= len(frames)
    assert exposed(relay, "runs_streams_open") == 0
