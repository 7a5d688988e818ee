"""Signing-key rotation and dual-signing cutover, on the maintenance queue."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from switchboard.auth import jobs, service
from switchboard.auth.errors import CutoverRefusedError
from workers.celery_app import celery_app, runtime, settings

log = structlog.get_logger("switchboard.auth")


@celery_app.task(name=jobs.ROTATE_KEYS)
def rotate() -> list[str]:
    """Creates, promotes, retires and removes keys as their timings say; idempotent."""
    return runtime.run(_rotate())


async def _rotate() -> list[str]:
    async with runtime.unit_of_work() as uow:
        report = await service.rotate(
            uow.session, runtime.key_store, settings.auth, datetime.now(UTC)
        )
    log.info("auth.keys_rotated", actions=report.actions)
    return report.actions


@celery_app.task(name=jobs.CUTOVER_KEYS)
def cutover() -> list[str]:
    """Promotes the next key now if it has been published long enough; else logs why not."""
    return runtime.run(_cutover())


async def _cutover() -> list[str]:
    try:
        async with runtime.unit_of_work() as uow:
            report = await service.cutover(
                uow.session, runtime.key_store, settings.auth, datetime.now(UTC)
            )
    except CutoverRefusedError as refused:
        log.warning("auth.cutover_refused", reason=refused.message)
        return [f"refused: {refused.message}"]
    log.info("auth.keys_cut_over", actions=report.actions)
    return report.actions
