"""Members of fresh tenants, stored in the test's transaction, with their bearer headers."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.models import Membership, Tenant, User
from switchboard.settings import Settings
from tests.support.auth import bearer


@dataclass(frozen=True)
class Member:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    headers: dict[str, str]


NewMember = Callable[..., Awaitable[Member]]


@pytest.fixture
def new_member(
    sessionmaker: SessionMaker, committed_keys: KeySnapshot, settings: Settings
) -> NewMember:
    """``await new_member()`` for a new tenant's owner; ``tenant_id=`` joins an existing one."""

    async def make(*, tenant_id: uuid.UUID | None = None, role: str = "owner") -> Member:
        async with sessionmaker() as session, session.begin():
            if tenant_id is None:
                tenant = Tenant(name="t")
                session.add(tenant)
                await session.flush()
                tenant_id = tenant.id
            user = User(
                email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1
            )
            session.add(user)
            await session.flush()
            session.add(Membership(tenant_id=tenant_id, user_id=user.id, role=role))
        headers = bearer(committed_keys, settings, tenant_id, role, subject=user.id)
        return Member(tenant_id, user.id, headers)

    return make
