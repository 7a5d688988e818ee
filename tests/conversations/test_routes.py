"""The conversation routes: pages, one conversation with a page of its messages, deletion;
each user sees only their own."""

from __future__ import annotations

import uuid

import pytest
from httpx import AsyncClient

from switchboard.kit.db import SessionMaker
from tests.support.conversations import add_messages
from tests.support.members import NewMember
from tests.support.plans import put_on_plan


async def _start(client: AsyncClient, headers: dict[str, str], message: str) -> str:
    response = await client.post("/api/v1/chat", json={"message": message}, headers=headers)
    assert response.status_code == 202
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


async def test_pages_follow_the_cursor_and_hold_only_the_callers_conversations(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker
) -> None:
    alice = await new_member()
    await put_on_plan(sessionmaker, alice.tenant_id)  # no limits: four runs stay queued
    bob = await new_member(tenant_id=alice.tenant_id, role="member")
    mine = [await _start(client, alice.headers, f"question {n}") for n in range(3)]
    await _start(client, bob.headers, "bob's question")

    first = (await client.get("/api/v1/conversations?limit=2", headers=alice.headers)).json()
    second = (
        await client.get(
            f"/api/v1/conversations?limit=2&cursor={first['next_cursor']}", headers=alice.headers
        )
    ).json()

    assert [item["id"] for item in first["items"] + second["items"]] == mine[::-1]
    assert second["next_cursor"] is None
    assert first["items"][0]["title"] == "question 2"


async def test_a_bad_cursor_is_refused(client: AsyncClient, new_member: NewMember) -> None:
    alice = await new_member()

    response = await client.get("/api/v1/conversations?cursor=bm9wZQ", headers=alice.headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_conversation_is_read_and_deleted_by_its_owner_only(
    client: AsyncClient, new_member: NewMember
) -> None:
    alice = await new_member()
    bob = await new_member(tenant_id=alice.tenant_id, role="member")
    conversation_id = await _start(client, alice.headers, "hello there")
    url = f"/api/v1/conversations/{conversation_id}"

    read = await client.get(url, headers=alice.headers)
    not_bobs = await client.get(url, headers=bob.headers)
    not_bobs_to_delete = await client.delete(url, headers=bob.headers)
    deleted = await client.delete(url, headers=alice.headers)
    gone = await client.get(url, headers=alice.headers)

    assert read.status_code == 200
    assert [(m["role"], m["content"]) for m in read.json()["messages"]] == [("user", "hello there")]
    assert [not_bobs.status_code, not_bobs_to_delete.status_code] == [404, 404]
    assert not_bobs.json()["code"] == "conversation.not_found"
    assert deleted.status_code == 204
    assert gone.status_code == 404


async def test_messages_come_a_page_at_a_time_oldest_first(
    client: AsyncClient, new_member: NewMember, sessionmaker: SessionMaker
) -> None:
    alice = await new_member()
    conversation_id = await _start(client, alice.headers, "m0")
    await add_messages(sessionmaker, uuid.UUID(conversation_id), 149)
    url = f"/api/v1/conversations/{conversation_id}"

    first = (await client.get(url, headers=alice.headers)).json()
    rest = (
        await client.get(
            f"{url}/messages", params={"cursor": first["next_cursor"]}, headers=alice.headers
        )
    ).json()
    small = (await client.get(url, params={"limit": 2}, headers=alice.headers)).json()
    after_small = (
        await client.get(
            url, params={"limit": 2, "cursor": small["next_cursor"]}, headers=alice.headers
        )
    ).json()

    assert [m["content"] for m in first["messages"]] == [f"m{n}" for n in range(100)]
    assert (first["id"], first["title"]) == (conversation_id, "m0")
    assert [m["content"] for m in rest["items"]] == [f"m{n}" for n in range(100, 150)]
    assert rest["next_cursor"] is None
    assert [m["content"] for m in small["messages"] + after_small["messages"]] == [
        "m0",
        "m1",
        "m2",
        "m3",
    ]


async def test_the_last_page_of_messages_has_no_next_cursor(
    client: AsyncClient, new_member: NewMember
) -> None:
    alice = await new_member()
    conversation_id = await _start(client, alice.headers, "only")
    url = f"/api/v1/conversations/{conversation_id}"

    read = (await client.get(url, params={"limit": 1}, headers=alice.headers)).json()
    listed = (await client.get(f"{url}/messages", headers=alice.headers)).json()

    assert [m["content"] for m in read["messages"]] == ["only"]
    assert read["next_cursor"] is None
    assert [m["content"] for m in listed["items"]] == ["only"]
    assert listed["next_cursor"] is None


async def test_another_users_messages_are_not_found(
    client: AsyncClient, new_member: NewMember
) -> None:
    alice = await new_member()
    bob = await new_member(tenant_id=alice.tenant_id, role="member")
    conversation_id = await _start(client, alice.headers, "mine")

    response = await client.get(
        f"/api/v1/conversations/{conversation_id}/messages", headers=bob.headers
    )

    assert response.status_code == 404
    assert response.json()["code"] == "conversation.not_found"


@pytest.mark.parametrize(
    ("path", "limit", "status"),
    [
        ("", 0, 422),
        ("", 500, 200),
        ("", 501, 422),
        ("/messages", 0, 422),
        ("/messages", 500, 200),
        ("/messages", 501, 422),
        ("/messages", 10**30, 422),
    ],
)
async def test_a_page_of_messages_holds_at_most_500(
    client: AsyncClient, new_member: NewMember, path: str, limit: int, status: int
) -> None:
    alice = await new_member()
    conversation_id = await _start(client, alice.headers, "hello")

    response = await client.get(
        f"/api/v1/conversations/{conversation_id}{path}",
        params={"limit": limit},
        headers=alice.headers,
    )

    assert response.status_code == status
    if status == 422:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(("limit", "status"), [(0, 422), (100, 200), (101, 422), (-1, 422)])
async def test_a_page_of_conversations_holds_at_most_100(
    client: AsyncClient, new_member: NewMember, limit: int, status: int
) -> None:
    alice = await new_member()

    response = await client.get(
        "/api/v1/conversations", params={"limit": limit}, headers=alice.headers
    )

    assert response.status_code == status


@pytest.mark.parametrize("path", ["/api/v1/conversations", "/api/v1/conversations/{id}/messages"])
async def test_a_nul_in_the_cursor_is_refused_as_the_cursor_field(
    client: AsyncClient, new_member: NewMember, path: str
) -> None:
    alice = await new_member()
    conversation_id = await _start(client, alice.headers, "hello")

    response = await client.get(
        path.format(id=conversation_id), params={"cursor": "W10\x00"}, headers=alice.headers
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
