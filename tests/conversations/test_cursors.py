"""Cursors: only the exact text this API returned is taken; anything else a client sends as
`cursor` is a 422 problem document, whatever is wrong with it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime

import pytest
from httpx import AsyncClient

from switchboard.conversations.cursor import encode_conversation_cursor, encode_message_cursor
from switchboard.kit.encoding import b64url_encode
from tests.support.members import Member, NewMember

ID = "0b3c1a2e-8e3e-4c1d-9d8e-1a2b3c4d5e6f"
STAMP = "2026-11-01T00:00:00Z"


def _b64(raw: bytes | str) -> str:
    return b64url_encode(raw.encode() if isinstance(raw, str) else raw)


def _json(value: object) -> str:
    return _b64(json.dumps(value, separators=(",", ":")))


# Each is wrong in one way; a cursor of this API is _json([STAMP, ID]) for conversations.
MALFORMED = {
    "not base64url": "!!!!",
    "base64url of a bad length": "abcde",
    "padding in the middle": "YQ=Y",
    "not JSON": _b64("nope"),
    "not UTF-8": _b64(b"\xff\xfe\xfd"),
    "JSON null": _json(None),
    "JSON string": _json("cursor"),
    "JSON number": _json(7),
    "JSON object": _json({"updated_at": STAMP, "id": ID}),
    "empty array": _json([]),
    "missing the id": _json([STAMP]),
    "an extra value": _json([STAMP, ID, 1]),
    "id as a number": _json([STAMP, 5]),
    "id as null": _json([STAMP, None]),
    "id as an array": _json([STAMP, [ID]]),
    "id not a UUID": _json([STAMP, "not-a-uuid"]),
    "id in braces": _json([STAMP, "{" + ID + "}"]),
    "id without hyphens": _json([STAMP, ID.replace("-", "")]),
    "id upper case": _json([STAMP, ID.upper()]),
    "timestamp as a number": _json([1_700_000_000, ID]),
    "timestamp without a zone": _json(["2026-11-01T00:00:00", ID]),
    "timestamp in another zone": _json(["2026-11-01T01:00:00+01:00", ID]),
    "timestamp unparseable": _json(["yesterday", ID]),
    "month 13": _json(["2026-13-01T00:00:00+00:00", ID]),
    "beyond the calendar in UTC": _json(["9999-12-31T23:59:59-14:00", ID]),
    "huge float": _b64(f'[1e999,"{ID}"]'),
    "huge integer": _b64(f'[{"9" * 60},"{ID}"]'),
    "NaN": _b64(f'[NaN,"{ID}"]'),
    "NUL in the timestamp": _json([STAMP + "\x00", ID]),
    "NUL in the id": _json([STAMP, ID + "\x00"]),
    "whitespace added": _b64(f'["{STAMP}", "{ID}"]'),
    "UTC written as +00:00": _json(["2026-11-01T00:00:00+00:00", ID]),
    "padded": _json([STAMP, ID]) + "=",
    "a message cursor": encode_message_cursor(uuid.UUID(ID), 3),
    "a NUL character": "\x00" + _json([STAMP, ID]),
    "longer than any cursor": "A" * 201,
}


@pytest.mark.parametrize("cursor", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_conversations_cursor_is_a_problem(
    client: AsyncClient, new_member: NewMember, cursor: str
) -> None:
    alice = await new_member()

    response = await client.get(
        "/api/v1/conversations", params={"cursor": cursor}, headers=alice.headers
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_the_cursor_the_api_writes_is_taken(
    client: AsyncClient, new_member: NewMember
) -> None:
    # The table above is wrong only where it says: the same values, well written, pass.
    alice = await new_member()
    cursor = encode_conversation_cursor(datetime.fromisoformat(STAMP), uuid.UUID(ID))
    assert cursor == _json([STAMP, ID])

    response = await client.get(
        "/api/v1/conversations", params={"cursor": cursor}, headers=alice.headers
    )

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


# Made for the conversation whose id they are given; the API writes _json([id, position]).
MALFORMED_FOR_MESSAGES: dict[str, Callable[[str], str]] = {
    "not JSON": lambda _: _b64("nope"),
    "a conversations cursor": lambda _: _json([STAMP, ID]),
    "position missing": lambda id_: _json([id_]),
    "an extra value": lambda id_: _json([id_, 0, 0]),
    "in the wrong order": lambda id_: _json([0, id_]),
    "position negative": lambda id_: _json([id_, -1]),
    "position beyond a Postgres integer": lambda id_: _json([id_, 2**31]),
    "position huge": lambda id_: _b64(f'["{id_}",{"9" * 80}]'),
    "position a float": lambda id_: _json([id_, 1.0]),
    "position a boolean": lambda id_: _json([id_, True]),
    "position a string": lambda id_: _json([id_, "1"]),
    "position null": lambda id_: _json([id_, None]),
    "another conversation's": lambda _: encode_message_cursor(uuid.uuid4(), 0),
    "id not a UUID": lambda _: _json(["conversation", 0]),
}


async def _conversation(client: AsyncClient, member: Member) -> str:
    response = await client.post("/api/v1/chat", json={"message": "hello"}, headers=member.headers)
    assert response.status_code == 202
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


@pytest.mark.parametrize("path", ["", "/messages"])
@pytest.mark.parametrize("make", MALFORMED_FOR_MESSAGES.values(), ids=MALFORMED_FOR_MESSAGES.keys())
async def test_a_malformed_messages_cursor_is_a_problem(
    client: AsyncClient, new_member: NewMember, path: str, make: Callable[[str], str]
) -> None:
    alice = await new_member()
    conversation_id = await _conversation(client, alice)
    url = f"/api/v1/conversations/{conversation_id}{path}"

    response = await client.get(
        url, params={"cursor": make(conversation_id)}, headers=alice.headers
    )
    well_made = await client.get(
        url, params={"cursor": _json([conversation_id, 0])}, headers=alice.headers
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
    assert well_made.status_code == 200


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/conversations", "The cursor is not one this API returned."),
        ("/api/v1/conversations/{id}", "The cursor belongs to another conversation."),
        ("/api/v1/conversations/{id}/messages", "The cursor belongs to another conversation."),
    ],
)
async def test_a_refused_cursor_is_listed_as_the_query_field_at_fault(
    client: AsyncClient, new_member: NewMember, path: str, detail: str
) -> None:
    alice = await new_member()
    conversation_id = await _conversation(client, alice)
    # Well formed, so the API's own check refuses it, not the query's validation.
    cursor = encode_message_cursor(uuid.uuid4(), 0)

    response = await client.get(
        path.format(id=conversation_id), params={"cursor": cursor}, headers=alice.headers
    )

    assert response.status_code == 422
    assert response.json() == {
        "type": "urn:switchboard:problem:validation_error",
        "title": "Unprocessable content",
        "status": 422,
        "detail": detail,
        "code": "validation_error",
        "errors": [{"loc": ["query", "cursor"], "msg": detail, "type": "cursor_invalid"}],
    }
