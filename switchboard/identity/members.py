"""A tenant's members: who they are, their roles, leaving; and the caller's tenants.

Every change of a tenant's members holds the tenant's row lock, so two changes of one tenant
take turns: two owners demoting each other cannot leave the tenant without one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from switchboard.auth.errors import ForbiddenError, InvalidTokenError
from switchboard.auth.principal import OPERATOR_ROLE, Principal
from switchboard.identity.errors import LastOwnerError, MemberNotFoundError
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.schemas import MemberRead, TenantMembershipRead
from switchboard.kit.pagination import (
    Page,
    decode_created_cursor,
    encode_created_cursor,
    keyset_page,
)
from switchboard.models import Membership, User, UserProfile

log = structlog.get_logger("switchboard.identity")

OWNER = "owner"
# Higher is more: a change to a role not above the old one lowers it (member to billing raises).
ROLE_RANK = {"member": 0, "billing": 1, "admin": 2, "owner": 3}


@dataclass
class MembersService:
    repo: IdentityRepository

    async def current(self, principal: Principal) -> Principal:
        """The principal with its role in the tenant as Postgres holds it now, not as the token
        said. A caller whose membership (or account) is gone is refused as an invalid token."""
        role = await self.repo.active_role(principal.subject, principal.tenant_id)
        if role is None:
            raise InvalidTokenError("membership_gone")
        return replace(principal, roles=frozenset({role}) | (principal.roles & {OPERATOR_ROLE}))

    async def tenants(self, principal: Principal) -> list[TenantMembershipRead]:
        return [
            TenantMembershipRead(tenant_id=tenant.id, name=tenant.name, role=membership.role)
            for membership, tenant in await self.repo.memberships_of(principal.subject)
        ]

    async def members(
        self, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
    ) -> Page[MemberRead]:
        after = decode_created_cursor(cursor) if cursor is not None else None
        rows = await self.repo.members(tenant_id, after=after, limit=limit + 1)
        return keyset_page(
            rows,
            limit,
            cursor=lambda row: encode_created_cursor((row[0].created_at, row[0].id)),
            read=_read_row,
        )

    async def change_role(self, actor: Principal, user_id: uuid.UUID, role: str) -> MemberRead:
        membership, user, profile = await self._member(actor, user_id, role)
        old = membership.role
        if role != old:
            if old == OWNER:
                await self._keep_an_owner(actor.tenant_id)
            membership.role = role
            await self.repo.flush()
            revoked = 0
            if ROLE_RANK[role] < ROLE_RANK[old]:
                # Its sessions end, so a refresh cannot outlive the role it was issued for.
                revoked = await self.repo.revoke_member_tokens(
                    user_id, actor.tenant_id, _now(), "role_lowered"
                )
            log.info(
                "identity.member_role_changed",
                tenant_id=str(actor.tenant_id),
                user_id=str(user_id),
                old_role=old,
                new_role=role,
                revoked_tokens=revoked,
            )
        return _member_read(membership, user, profile)

    async def remove(self, actor: Principal, user_id: uuid.UUID) -> None:
        membership, _, _ = await self._member(actor, user_id, None)
        if membership.role == OWNER:
            await self._keep_an_owner(actor.tenant_id)
        await self.repo.delete_membership(membership.id)
        revoked = await self.repo.revoke_member_tokens(
            user_id, actor.tenant_id, _now(), "member_removed"
        )
        log.info(
            "identity.member_removed",
            tenant_id=str(actor.tenant_id),
            user_id=str(user_id),
            revoked_tokens=revoked,
        )

    async def _member(
        self, actor: Principal, user_id: uuid.UUID, new_role: str | None
    ) -> tuple[Membership, User, UserProfile | None]:
        """The member, with the tenant locked; only an owner grants or takes away `owner`."""
        await self.repo.lock_tenant(actor.tenant_id)
        found = await self.repo.members(actor.tenant_id, user_id)
        if not found:
            raise MemberNotFoundError("The tenant has no such member.")
        membership = found[0][0]
        if OWNER in (membership.role, new_role) and OWNER not in actor.roles:
            raise ForbiddenError("Only an owner may grant or take away the owner role.")
        return found[0]

    async def _keep_an_owner(self, tenant_id: uuid.UUID) -> None:
        if await self.repo.count_owners(tenant_id) <= 1:
            raise LastOwnerError(
                "The tenant's last owner cannot be demoted or removed; make another owner first."
            )


def _read_row(row: tuple[Membership, User, UserProfile | None]) -> MemberRead:
    return _member_read(*row)


def _member_read(membership: Membership, user: User, profile: UserProfile | None) -> MemberRead:
    return MemberRead(
        user_id=user.id,
        email=user.email,
        display_name=profile.display_name if profile else None,
        role=membership.role,
        joined_at=membership.created_at,
    )


def _now() -> datetime:
    return datetime.now(UTC)
