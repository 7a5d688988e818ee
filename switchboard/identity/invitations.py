"""Invitations to join a tenant: a single-use, expiring link by the notifier, accepted by a new
or an existing account.

An invitation takes a seat while it is pending: members plus pending invitations never exceed
the seats of the tenant's plan (``BillingService.free_seats``, which counts them with the
tenant's row locked, so concurrent invitations for the last seat take turns).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError

from switchboard.auth.errors import ForbiddenError
from switchboard.auth.principal import Principal
from switchboard.billing.service import BillingService
from switchboard.identity.errors import (
    AlreadyMemberError,
    EmailTakenError,
    InvalidInvitationError,
    InvitationNotFoundError,
    NoSeatFreeError,
    PasswordRequiredError,
)
from switchboard.identity.members import OWNER
from switchboard.identity.notifier import Notifier
from switchboard.identity.passwords import PasswordHasher, check_password_policy
from switchboard.identity.repository import IdentityRepository
from switchboard.identity.schemas import InvitationAccept, InvitationRead, TokenPair
from switchboard.identity.secrets import (
    event_hash,
    new_token,
    parse_token,
    secret_hash,
    secret_matches,
    token_pepper,
)
from switchboard.identity.sessions import Client, SessionService
from switchboard.kit.pagination import (
    Page,
    decode_created_cursor,
    encode_created_cursor,
    keyset_page,
)
from switchboard.models import Invitation, User
from switchboard.settings import Settings

log = structlog.get_logger("switchboard.identity")

INVITATION_PREFIX = "inv"


@dataclass
class InvitationService:
    repo: IdentityRepository
    billing: BillingService
    sessions: SessionService
    settings: Settings
    hasher: PasswordHasher
    notifier: Notifier

    async def invite(self, actor: Principal, email: str, role: str) -> InvitationRead:
        if role == OWNER and OWNER not in actor.roles:
            raise ForbiddenError("Only an owner may invite an owner.")
        tenant_id = actor.tenant_id
        tenant = await self.repo.lock_tenant(tenant_id)
        assert tenant is not None  # the caller's membership was read in this transaction
        if await self.repo.is_member_email(tenant_id, email):
            raise AlreadyMemberError("This email already belongs to a member of the tenant.")
        now = datetime.now(UTC)
        # A new invitation replaces the address's open one; its seat is counted once.
        replaced = await self.repo.revoke_open_invitations(tenant_id, email, now)
        free = await self.billing.free_seats(tenant_id)
        if free is not None and free < 1:
            raise NoSeatFreeError(
                "No seat is free: every seat of the plan holds a member or a pending invitation."
            )
        token = new_token(INVITATION_PREFIX)
        invitation = Invitation(
            tenant_id=tenant_id,
            email=email,
            role=role,
            invited_by=actor.subject,
            selector=token.selector,
            secret_hash=secret_hash(token_pepper(self.settings.auth), token.secret),
            expires_at=now + timedelta(hours=self.settings.identity.invitation_ttl_hours),
        )
        self.repo.add_invitation(invitation)
        await self.repo.flush()
        log.info(
            "identity.invitation_created",
            tenant_id=str(tenant_id),
            invitation_id=str(invitation.id),
            replaced=replaced,
            email_hash=event_hash(self.settings.identity, email.lower()),
        )
        await self.notifier.send_invitation(
            email=email,
            link=self.settings.identity.invitation_url + token.value,
            tenant_name=tenant.name,
            role=role,
        )
        return InvitationRead.model_validate(invitation)

    async def pending(
        self, principal: Principal, *, limit: int, cursor: str | None
    ) -> Page[InvitationRead]:
        after = decode_created_cursor(cursor) if cursor is not None else None
        rows = await self.repo.pending_invitations(
            principal.tenant_id, datetime.now(UTC), after=after, limit=limit + 1
        )
        return keyset_page(
            rows,
            limit,
            cursor=lambda row: encode_created_cursor((row.created_at, row.id)),
            read=InvitationRead.model_validate,
        )

    async def revoke(self, actor: Principal, invitation_id: uuid.UUID) -> None:
        if not await self.repo.revoke_invitation(actor.tenant_id, invitation_id, datetime.now(UTC)):
            raise InvitationNotFoundError("The tenant has no such open invitation.")
        log.info(
            "identity.invitation_revoked",
            tenant_id=str(actor.tenant_id),
            invitation_id=str(invitation_id),
        )

    async def accept(self, request: InvitationAccept, client: Client) -> TokenPair:
        """Joins the invited tenant and signs in to it. A new email gets an account (the
        password is required and must pass the policy); an existing account joins on the token
        alone, which proves control of the email. Any refusal writes nothing."""
        invitation = await self._pending(request.token)
        now = datetime.now(UTC)
        user = await self.repo.user_by_email(invitation.email)
        if user is None:
            if request.password is None:
                raise PasswordRequiredError()
            identity = self.settings.identity
            check_password_policy(
                request.password,
                email=invitation.email,
                min_length=identity.password_min_length,
                max_length=identity.password_max_length,
            )
        elif user.status != "active":
            raise InvalidInvitationError()
        if not await self.repo.claim_invitation(invitation.id, now):
            # Another accept (or a revoke) took it between our read and our write.
            raise InvalidInvitationError()
        if user is None:
            assert request.password is not None
            user = await self._new_user(invitation.email, request.password, request.display_name)
        elif await self.repo.membership(user.id, invitation.tenant_id) is not None:
            raise AlreadyMemberError("This account is already a member of the tenant.")
        user.email_verified = True  # the link reached this address
        await self.repo.set_invitation_accepter(invitation.id, user.id)
        membership = self.repo.add_membership(user.id, invitation.tenant_id, invitation.role)
        await self.repo.flush()
        log.info(
            "identity.invitation_accepted",
            invitation_id=str(invitation.id),
            tenant_id=str(invitation.tenant_id),
            user_id=str(user.id),
        )
        return await self.sessions.issue_pair(user, membership, client)

    async def _pending(self, value: str) -> Invitation:
        parsed = parse_token(value, INVITATION_PREFIX)
        row = await self.repo.invitation_by_selector(parsed.selector) if parsed else None
        if (
            parsed is None
            or row is None
            or not secret_matches(token_pepper(self.settings.auth), parsed.secret, row.secret_hash)
            or row.accepted_at is not None
            or row.revoked_at is not None
            or row.expires_at <= datetime.now(UTC)
        ):
            raise InvalidInvitationError()
        return row

    async def _new_user(self, email: str, password: str, display_name: str | None) -> User:
        hashed = await self.hasher.hash_async(password)
        user = self.repo.add_user(email, hashed, email_verified=True)
        try:
            await self.repo.flush()
        except IntegrityError:
            # The address registered meanwhile; accepting again joins that account.
            raise EmailTakenError(
                "An account with this email was just created; accept the invitation again."
            ) from None
        self.repo.add_profile(user.id, display_name)
        return user
