"""Queries of the identity tables. Every statement is here; services hold the rules."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.identity.passwords import PasswordHash
from switchboard.kit.pagination import CreatedKey
from switchboard.models import (
    Invitation,
    Membership,
    PasswordResetToken,
    RefreshToken,
    ServiceAccount,
    ServiceAccountCredential,
    Tenant,
    User,
    UserLoginEvent,
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

    def add_tenant(self, name: str) -> Tenant:
        tenant = Tenant(name=name)
        self.session.add(tenant)
        return tenant

    def add_profile(self, user_id: uuid.UUID, display_name: str | None) -> UserProfile:
        profile = UserProfile(user_id=user_id, display_name=display_name)
        self.session.add(profile)
        return profile

    def add_membership(self, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str) -> Membership:
        membership = Membership(user_id=user_id, tenant_id=tenant_id, role=role)
        self.session.add(membership)
        return membership

    async def flush(self) -> None:
        await self.session.flush()

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

    def add_login_event(
        self,
        *,
        user_id: uuid.UUID | None,
        email_hash: str,
        ip_hash: str,
        user_agent: str | None,
        result: str,
        reason: str | None,
    ) -> None:
        self.session.add(
            UserLoginEvent(
                user_id=user_id,
                email_hash=email_hash,
                ip_hash=ip_hash,
                user_agent=user_agent,
                result=result,
                reason=reason,
            )
        )

    def add_refresh_token(self, token: RefreshToken) -> None:
        self.session.add(token)

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

    async def revoke_member_tokens(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, now: datetime, reason: str
    ) -> int:
        """Every live refresh token of the user in one tenant (the sessions of that tenant)."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.user_id == user_id,
                RefreshToken.tenant_id == tenant_id,
                RefreshToken.revoked_at.is_(None),
            )
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

    def add_reset_token(
        self, user_id: uuid.UUID, selector: str, secret_hash: str, expires_at: datetime
    ) -> None:
        self.session.add(
            PasswordResetToken(
                user_id=user_id, selector=selector, secret_hash=secret_hash, expires_at=expires_at
            )
        )

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

    def add_service_account(
        self, tenant_id: uuid.UUID, name: str, scopes: list[str]
    ) -> ServiceAccount:
        account = ServiceAccount(tenant_id=tenant_id, name=name, scopes=scopes, status="active")
        self.session.add(account)
        return account

    def add_credential(
        self, service_account_id: uuid.UUID, client_id: str, secret_hash: str
    ) -> None:
        self.session.add(
            ServiceAccountCredential(
                service_account_id=service_account_id, client_id=client_id, secret_hash=secret_hash
            )
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

    # Members and invitations.

    async def lock_tenant(self, tenant_id: uuid.UUID) -> Tenant | None:
        """The tenant's row, locked: member changes of one tenant take turns behind it. FOR NO
        KEY UPDATE, so rows that merely reference the tenant (a sign-in's refresh token, an
        accepted invitation's membership) are not held up by it."""
        return await self.session.get(Tenant, tenant_id, with_for_update={"key_share": True})

    async def active_role(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> str | None:
        """The role an active user holds in the tenant now, None without a membership."""
        return await self.session.scalar(
            select(Membership.role)
            .join(User, User.id == Membership.user_id)
            .where(
                Membership.user_id == user_id,
                Membership.tenant_id == tenant_id,
                User.status == "active",
            )
        )

    async def memberships_of(self, user_id: uuid.UUID) -> list[tuple[Membership, Tenant]]:
        """The user's memberships with their tenants, oldest first (login's default first)."""
        rows = await self.session.execute(
            select(Membership, Tenant)
            .join(Tenant, Tenant.id == Membership.tenant_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at, Membership.id)
        )
        return [(membership, tenant) for membership, tenant in rows]

    async def members(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID | None = None,
        *,
        after: CreatedKey | None = None,
        limit: int | None = None,
    ) -> list[tuple[Membership, User, UserProfile | None]]:
        """The tenant's members (or the one with ``user_id``), oldest first; with ``after``,
        those that come after the membership of that ``(created_at, id)``."""
        query = (
            select(Membership, User, UserProfile)
            .join(User, User.id == Membership.user_id)
            .outerjoin(UserProfile, UserProfile.user_id == Membership.user_id)
            .where(Membership.tenant_id == tenant_id)
            .order_by(Membership.created_at, Membership.id)
            .limit(limit)
        )
        if user_id is not None:
            query = query.where(Membership.user_id == user_id)
        if after is not None:
            query = query.where(tuple_(Membership.created_at, Membership.id) > tuple_(*after))
        rows = await self.session.execute(query)
        return [(membership, user, profile) for membership, user, profile in rows]

    async def count_owners(self, tenant_id: uuid.UUID) -> int:
        count = await self.session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.tenant_id == tenant_id, Membership.role == "owner")
        )
        return int(count or 0)

    async def delete_membership(self, membership_id: uuid.UUID) -> None:
        await self.session.execute(delete(Membership).where(Membership.id == membership_id))

    async def is_member_email(self, tenant_id: uuid.UUID, email: str) -> bool:
        found = await self.session.scalar(
            select(Membership.id)
            .join(User, User.id == Membership.user_id)
            .where(Membership.tenant_id == tenant_id, func.lower(User.email) == email.lower())
        )
        return found is not None

    def add_invitation(self, invitation: Invitation) -> None:
        self.session.add(invitation)

    async def revoke_open_invitations(self, tenant_id: uuid.UUID, email: str, now: datetime) -> int:
        """Revokes the address's open invitation to the tenant (pending or expired unused)."""
        result = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.tenant_id == tenant_id,
                func.lower(Invitation.email) == email.lower(),
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .returning(Invitation.id)
        )
        return len(result.all())

    async def revoke_invitation(
        self, tenant_id: uuid.UUID, invitation_id: uuid.UUID, now: datetime
    ) -> bool:
        """Revokes the tenant's invitation if it is neither accepted nor revoked."""
        result = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation_id,
                Invitation.tenant_id == tenant_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .returning(Invitation.id)
        )
        return result.first() is not None

    async def pending_invitations(
        self, tenant_id: uuid.UUID, now: datetime, *, after: CreatedKey | None, limit: int
    ) -> list[Invitation]:
        """Neither accepted, revoked nor expired; oldest first, from after ``after``."""
        query = (
            select(Invitation)
            .where(
                Invitation.tenant_id == tenant_id,
                Invitation.pending_at(now),
            )
            .order_by(Invitation.created_at, Invitation.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(Invitation.created_at, Invitation.id) > tuple_(*after))
        return list(await self.session.scalars(query))

    async def invitation_by_selector(self, selector: str) -> Invitation | None:
        query = select(Invitation).where(Invitation.selector == selector)
        return (await self.session.scalars(query)).one_or_none()

    async def claim_invitation(self, invitation_id: uuid.UUID, now: datetime) -> bool:
        """Marks the invitation accepted if it is still pending: the one atomic step that makes
        it single-use (a concurrent claim waits for this row and then finds it taken)."""
        claimed = await self.session.execute(
            update(Invitation)
            .where(
                Invitation.id == invitation_id,
                Invitation.pending_at(now),
            )
            .values(accepted_at=now)
            .returning(Invitation.id)
        )
        return claimed.first() is not None

    async def set_invitation_accepter(self, invitation_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Invitation).where(Invitation.id == invitation_id).values(accepted_by=user_id)
        )
