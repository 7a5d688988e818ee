"""Signing-key rotation and dual-signing cutover, on the maintenance queue."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import structlog

from switchboard.auth import service
from switchboard.auth.errors import CutoverRefusedError
from switchboard.auth.keystore import KeyStore, create_key_store
from workers.celery_app import celery_app, settings
from workers.runtime import get_runtime

log = structlog.get_logger("switchboard.auth")


@cache
def key_store() -> KeyStore:
    return create_key_store(settings.auth)


@celery_app.task(name="auth.keys.rotate")
def rotate() -> list[str]:
    """Creates, promotes, retires and removes keys as their timings say; idempotent."""
    return get_runtime().run(_rotate())


async def _rotate() -> list[str]:
    async with get_runtime().unit_of_work() as uow:
        report = await service.rotate(uow.session, key_store(), settings.auth, datetime.now(UTC))
    log.info("auth.keys_rotated", actions=report.actions)
    return report.actions


@celery_app.task(name="auth.keys.cutover")
def cutover() -> list[str]:
    """Promotes the next key now if it has been published long enough; else logs why not."""
    return get_runtime().run(_cutover())


async def _cutover() -> list[str]:
    try:
        async with get_runtime().unit_of_work() as uow:
            report = await service.cutover(
                uow.session, key_store(), settings.auth, datetime.now(UTC)
            )
    except CutoverRefusedError as refused:
        log.warning("auth.cutover_refused", reason=refused.message)
        return [f"refused: {refused.message}"]
    log.info("auth.keys_cut_over", actions=report.actions)
    return report.actions
