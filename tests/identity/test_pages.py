"""A tenant's members and pending invitations come in pages: at most `limit` (100 unless
asked, never over 500), the next page's URL in `Link: <...>; rel="next"`."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.models import Invitation, Membership, User
from tests.identity.support import Account, owner

MEMBERS = "/api/v1/tenant/members"
INVITATIONS = "/api/v1/tenant/invitations"
PROBLEM = "application/problem+json"

pytestmark = pytest.mark.usefixtures("committed_keys")


async def add_members(db_session: AsyncSession, tenant_id: str, count: int) -> None:
    users = [
        User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1)
        for _ in range(count)
    ]
    db_session.add_all(users)
    await db_session.flush()
    db_session.add_all(
        Membership(tenant_id=uuid.UUID(tenant_id), user_id=user.id, role="member") for user in users
    )
    await db_session.commit()


async def add_invitations(db_session: AsyncSession, tenant_id: str, count: int) -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    db_session.add_all(
        Invitation(
            tenant_id=uuid.UUID(tenant_id),
            email=f"{uuid.uuid4().hex}@example.com",
            role="member",
            selector=uuid.uuid4().hex,
            secret_hash="0" * 64,
            expires_at=expires,
        )
        for _ in range(count)
    )
    await db_session.commit()


def next_link(response: Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    found = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert found is not None, link
    return found.group(1)


async def every_page(client: AsyncClient, url: str, account: Account) -> list[list[Any]]:
    pages: list[list[Any]] = []
    following: str | None = url
    while following is not None:
        response = await client.get(following, headers=account.headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        following = next_link(response)
    return pages


@pytest.mark.parametrize(("path", "key"), [(MEMBERS, "user_id"), (INVITATIONS, "id")])
async def test_pages_follow_each_other_to_the_whole_list_in_order(
    client: AsyncClient, db_session: AsyncSession, path: str, key: str
) -> None:
    boss = await owner(client)
    if path == MEMBERS:
        await add_members(db_session, boss.tenant_id, 6)  # 7 with the owner
    else:
        await add_invitations(db_session, boss.tenant_id, 7)
    whole = await client.get(path, headers=boss.headers)

    pages = await every_page(client, f"{path}?limit=2", boss)

    assert whole.status_code == 200
    assert "link" not in whole.headers
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    assert [row[key] for page in pages for row in page] == [row[key] for row in whole.json()]
    assert len({row[key] for row in whole.json()}) == 7


@pytest.mark.parametrize("path", [MEMBERS, INVITATIONS])
async def test_a_page_holds_100_unless_asked_and_never_more_than_500(
    client: AsyncClient, db_session: AsyncSession, path: str
) -> None:
    boss = await owner(client)
    if path == MEMBERS:
        await add_members(db_session, boss.tenant_id, 501)  # 502 with the owner
    else:
        await add_invitations(db_session, boss.tenant_id, 502)

    default = await client.get(path, headers=boss.headers)
    largest = await client.get(f"{path}?limit=500", headers=boss.headers)
    too_large = await client.get(f"{path}?limit=501", headers=boss.headers)
    empty = await client.get(f"{path}?limit=0", headers=boss.headers)

    assert len(default.json()) == 100
    assert next_link(default) is not None
    assert len(largest.json()) == 500
    last = await client.get(str(next_link(largest)), headers=boss.headers)
    assert len(last.json()) == 2
    assert next_link(last) is None
    for refused in (too_large, empty):
        assert refused.status_code == 422
        assert refused.headers["content-type"].startswith(PROBLEM)
        assert "limit" in refused.json()["detail"]


@pytest.mark.parametrize("path", [MEMBERS, INVITATIONS])
@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "WyIyMDI2LTEyLTAzIiwgIngiXQ",  # base64url of ["2026-12-03", "x"]
        "a%00b",
    ],
)
async def test_a_cursor_this_api_did_not_write_is_a_422(
    client: AsyncClient, path: str, cursor: str
) -> None:
    boss = await owner(client)

    refused = await client.get(f"{path}?cursor={cursor}", headers=boss.headers)

    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["code"] == "validation_error"
    assert refused.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_an_altered_cursor_is_refused(client: AsyncClient, db_session: AsyncSession) -> None:
    boss = await owner(client)
    await add_members(db_session, boss.tenant_id, 2)
    first = await client.get(f"{MEMBERS}?limit=1", headers=boss.headers)
    following = str(next_link(first))

    altered = await client.get(following + "A", headers=boss.headers)

    assert (await client.get(following, headers=boss.headers)).status_code == 200
    assert altered.status_code == 422
    assert altered.json()["errors"] == [
        {
            "loc": ["query", "cursor"],
            "msg": "The cursor is not one this API returned.",
            "type": "cursor_invalid",
        }
    ]
