"""Platform operations: signing keys."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import RequireOperator, UoW
from switchboard.auth.schemas import KeyRotationRequest, KeySetRead, TaskAccepted
from switchboard.auth.service import list_keys

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("/keys", response_model=KeySetRead)
async def keys(_: RequireOperator, uow: UoW) -> KeySetRead:
    """Every signing key with its state and timestamps (no key material). Operators only."""
    return KeySetRead(keys=await list_keys(uow.session))


@router.post("/keys/rotate", status_code=202, response_model=TaskAccepted)
async def rotate(
    _: RequireOperator, uow: UoW, request: KeyRotationRequest | None = None
) -> TaskAccepted:
    """Enqueues `auth.keys.rotate` (default) or `auth.keys.cutover` on the maintenance queue.

    Follow the task in Flower by its id. A cutover refused because the next key has not been
    published long enough is logged with the time it may sign from.
    """
    action = request.action if request is not None else "rotate"
    return TaskAccepted(task_id=uow.jobs.enqueue(f"auth.keys.{action}"))
