"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AppResources
from switchboard.kit.health import Readiness, check_readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    """200 while the process runs; checks nothing else, so a slow database never restarts it."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "A dependency is down."}},
)
async def ready(resources: AppResources, response: Response) -> Readiness:
    """Checks Postgres, Redis and the Celery broker, each with its latency.

    Answers 503 with the same body when any check fails, so a load balancer stops routing here
    while an operator can still read which dependency is down.
    """
    readiness = await check_readiness(resources)
    if not readiness.ok:
        response.status_code = 503
    return readiness
