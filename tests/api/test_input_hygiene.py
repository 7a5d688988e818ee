"""Text Postgres cannot store (NUL) or UTF-8 cannot encode (a lone surrogate) is a 422 naming
the field, wherever a client sends it; before, the insert failed and the API answered 500."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response

from tests.support.members import NewMember

PROBLEM = "application/problem+json"
NUL = "a\x00b"
# Sent as the JSON escape "\ud800", which a JSON parser turns into a lone surrogate.
LONE_SURROGATE = "a\ud800b"
UNSAFE = pytest.mark.parametrize("text", [NUL, LONE_SURROGATE], ids=["nul", "lone_surrogate"])


async def post_json(
    client: AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    # ensure_ascii escapes both, as any client serialising such a string would.
    content = json.dumps(body, ensure_ascii=True)
    return await client.post(
        url,
        content=content,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def refused_locations(response: Response) -> list[list[str | int]]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert {error["type"] for error in problem["errors"]} == {"string_unsafe"}
    return [error["loc"] for error in problem["errors"]]


@UNSAFE
async def test_a_chat_message_with_unsafe_text_is_refused(
    client: AsyncClient, new_member: NewMember, text: str
) -> None:
    alice = await new_member()

    response = await post_json(client, "/api/v1/chat", {"message": text}, alice.headers)

    assert refused_locations(response) == [["body", "message"]]


@UNSAFE
@pytest.mark.usefixtures("committed_keys")
async def test_register_fields_with_unsafe_text_are_refused(client: AsyncClient, text: str) -> None:
    body = {
        "email": f"user-{uuid.uuid4().hex[:10]}@example.com",
        "password": "a long enough passphrase",
        "tenant_name": text,
        "display_name": text,
    }

    response = await post_json(client, "/api/v1/auth/register", body)

    assert sorted(refused_locations(response)) == [
        ["body", "display_name"],
        ["body", "tenant_name"],
    ]


@UNSAFE
async def test_a_plan_code_with_unsafe_text_is_refused(
    client: AsyncClient, new_member: NewMember, text: str
) -> None:
    owner = await new_member()

    started = await post_json(
        client, "/api/v1/billing/subscription", {"plan_code": text}, owner.headers
    )
    changed = await client.patch(
        "/api/v1/billing/subscription",
        content=json.dumps({"plan_code": text}),
        headers={"Content-Type": "application/json", **owner.headers},
    )

    assert refused_locations(started) == [["body", "plan_code"]]
    assert refused_locations(changed) == [["body", "plan_code"]]


async def test_a_query_parameter_with_a_nul_is_refused(
    client: AsyncClient, new_member: NewMember
) -> None:
    # A URL carries UTF-8 only (a lone surrogate decodes as U+FFFD), but %00 decodes to NUL.
    owner = await new_member()

    response = await client.delete("/api/v1/tenant/data?confirm=a%00b", headers=owner.headers)

    assert refused_locations(response) == [["query", "confirm"]]
