"""Queries of the identity tables. Every statement is here; services hold the rules."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.identity.passwords import PasswordHash
from switchboard.models import (
    Membership,
    PasswordResetToken,
    RefreshToken,
    ServiceAccount,
    ServiceAccountCredential,
    Tenant,
    User,
    UserProfile,
)


class IdentityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add_user(
        self,
        email: str,
        password: PasswordHash,
        *,
        email_verified: bool = False,
        operator: bool = False,
    ) -> User:
        user = User(
            email=email,
            password_hash=password.value,
            pepper_version=password.pepper_version,
            status="active",
            email_verified=email_verified,
            is_platform_operator=operator,
        )
        self.session.add(user)
        return user

    async def user_by_email(self, email: str) -> User | None:
        query = select(User).where(func.lower(User.email) == email.lower())
        return (await self.session.scalars(query)).one_or_none()

    async def user(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def tenant(self, tenant_id: uuid.UUID) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id)

    async def profile(self, user_id: uuid.UUID) -> UserProfile | None:
        return await self.session.get(UserProfile, user_id)

    async def membership(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID | None = None
    ) -> Membership | None:
        """The membership in ``tenant_id``, or the user's first one."""
        query = select(Membership).where(Membership.user_id == user_id)
        if tenant_id is not None:
            query = query.where(Membership.tenant_id == tenant_id)
        query = query.order_by(Membership.created_at, Membership.id).limit(1)
        return (await self.session.scalars(query)).one_or_none()

    async def refresh_by_selector(self, selector: str) -> RefreshToken | None:
        query = select(RefreshToken).where(RefreshToken.selector == selector)
        return (await self.session.scalars(query)).one_or_none()

    async def claim_refresh(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Marks the token spent if nobody else has: the one atomic step of rotation."""
        claimed = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token_id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=now)
            .returning(RefreshToken.id)
        )
        return claimed.first() is not None

    async def revoke_family(self, family_id: uuid.UUID, now: datetime, reason: str) -> int:
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .returning(RefreshToken.id)
        )
        return len(result.all())

    async def revoke_user_tokens(self, user_id: uuid.UUID, now: datetime, reason: str) -> int:
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .returning(RefreshToken.id)
        )
        return len(result.all())

    async def reset_by_selector(self, selector: str) -> PasswordResetToken | None:
        query = select(PasswordResetToken).where(PasswordResetToken.selector == selector)
        return (await self.session.scalars(query)).one_or_none()

    async def claim_reset(self, token_id: uuid.UUID, now: datetime) -> bool:
        claimed = await self.session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.id == token_id, PasswordResetToken.used_at.is_(None))
            .values(used_at=now)
            .returning(PasswordResetToken.id)
        )
        return claimed.first() is not None

    async def spend_user_resets(self, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
            .values(used_at=now)
        )

    async def credential(
        self, client_id: str
    ) -> tuple[ServiceAccountCredential, ServiceAccount] | None:
        query = (
            select(ServiceAccountCredential, ServiceAccount)
            .join(ServiceAccount)
            .where(ServiceAccountCredential.client_id == client_id)
        )
        row = (await self.session.execute(query)).first()
        return (row[0], row[1]) if row else None

    async def delete_refresh_tokens(self, *, family_expired_before: datetime, limit: int) -> int:
        """Deletes up to ``limit`` tokens of families that can no longer be used."""
        doomed = (
            select(RefreshToken.id)
            .where(RefreshToken.family_expires_at < family_expired_before)
            .limit(limit)
        )
        result = await self.session.execute(
            delete(RefreshToken).where(RefreshToken.id.in_(doomed)).returning(RefreshToken.id)
        )
        return len(result.all())
