"""The conversation routes: pages, one conversation, deletion; each user sees only their own."""

from __future__ import annotations

from httpx import AsyncClient

from switchboard.kit.db import SessionMaker
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
