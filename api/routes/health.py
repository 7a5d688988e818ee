"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import AppResources
from switchboard.kit.health import Readiness, check_readiness

router = APIRouter(prefix="/health", tags=["health"])

# Examples of the OpenAPI document (/docs, /redoc); readiness is a model of switchboard.kit.
_LIVE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": {"status": "ok"}}}}
}
_READY: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {
                "example": {
                    "status": "ok",
                    "checks": {
                        "postgres": {"ok": True, "latency_ms": 1.84},
                        "redis": {"ok": True, "latency_ms": 0.42},
                        "broker": {"ok": True, "latency_ms": 0.39},
                    },
                }
            }
        }
    },
    503: {
        "model": Readiness,
        "description": "A dependency is down.",
        "content": {
            "application/json": {
                "example": {
                    "status": "error",
                    "checks": {
                        "postgres": {"ok": True, "latency_ms": 1.91},
                        "redis": {"ok": False, "latency_ms": 2000.0, "error": "timed out"},
                        "broker": {"ok": True, "latency_ms": 0.44},
                    },
                }
            }
        },
    },
}


@router.get("/live", responses=_LIVE)
async def live() -> dict[str, str]:
    """200 while the process runs; checks nothing else, so a slow database never restarts it."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses=_READY,
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
