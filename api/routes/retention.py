"""The tenant's own data: deleting all of it, on its owner's word."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.deps import RequireMember, UoW
from api.errors import problem_responses
from switchboard.auth.errors import ForbiddenError, InvalidTokenError
from switchboard.auth.principal import Principal
from switchboard.kit.text import SafeStr
from switchboard.retention import tenant_data
from switchboard.retention.errors import ConfirmationMismatchError, DeletionNotFoundError
from switchboard.retention.schemas import TenantDeletionRead

router = APIRouter(
    prefix="/api/v1/tenant",
    tags=["tenant"],
    responses=problem_responses(InvalidTokenError, ForbiddenError, 503),
)

# Roles are read from Postgres at each request, not trusted from the token.
Owner = Annotated[Principal, Depends(RequireMember("owner"))]
OwnerOrAdmin = Annotated[Principal, Depends(RequireMember("owner", "admin"))]


@router.delete(
    "/data",
    status_code=202,
    response_model=TenantDeletionRead,
    responses=problem_responses(422, ConfirmationMismatchError),
)
async def delete_data(
    principal: Owner,
    uow: UoW,
    response: Response,
    confirm: Annotated[SafeStr, Query(description="The tenant's id, to confirm.", max_length=64)],
) -> TenantDeletionRead:
    """Delete all of the tenant's data (conversations, runs, members, sessions, service
    accounts). Owner only; enqueued; the request is kept as an audit record."""
    deletion = await tenant_data.request_deletion(
        uow.session,
        tenant_id=principal.tenant_id,
        user_id=principal.subject,
        confirm=confirm,
        jobs=uow.jobs,
    )
    response.headers["Location"] = f"/api/v1/tenant/data/deletions/{deletion.id}"
    return TenantDeletionRead.model_validate(deletion)


@router.get(
    "/data/deletions/{deletion_id}",
    response_model=TenantDeletionRead,
    responses=problem_responses(DeletionNotFoundError),
)
async def deletion(deletion_id: uuid.UUID, principal: OwnerOrAdmin, uow: UoW) -> TenantDeletionRead:
    """A deletion request of this tenant: its status and what it deleted."""
    found = await tenant_data.get_deletion(uow.session, principal.tenant_id, deletion_id)
    return TenantDeletionRead.model_validate(found)
