"""The production Celery app plus tasks that only tests need (failures on demand)."""

from __future__ import annotations

from workers.celery_app import celery_app

__all__ = ["celery_app"]


@celery_app.task(name="tests.fail", ignore_result=False)
def fail(reason: str) -> None:
    raise ValueError(reason)
