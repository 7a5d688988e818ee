"""Key rotation tasks on real workers: concurrent runs act once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.auth.keyring import KeySnapshot
from switchboard.settings import Settings
from tests.support.worker import WorkerProcess, start_worker, stop_worker, wait_until_consuming


async def _states(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT kid, state FROM signing_key"))
        return {row.kid: row.state for row in rows}


@pytest.fixture
def second_worker(celery_app: Celery, tmp_path: Path) -> WorkerProcess:
    worker = start_worker(tmp_path, concurrency=2)
    wait_until_consuming(celery_app, worker)
    yield worker
    stop_worker(worker)


async def test_concurrent_rotations_make_one_transition(
    celery_app: Celery,
    worker: WorkerProcess,
    second_worker: WorkerProcess,
    engine: AsyncEngine,
    committed_keys: KeySnapshot,
    settings: Settings,
) -> None:
    # Make a cutover due: the active key has signed a whole period, next was published long ago.
    past = datetime.now(UTC) - timedelta(days=settings.auth.key_signing_days + 1)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE signing_key SET created_at = :t, activated_at = :t WHERE state = 'active'"
            ),
            {"t": past},
        )
        await conn.execute(
            text("UPDATE signing_key SET created_at = :t WHERE state = 'next'"), {"t": past}
        )
    before = await _states(engine)

    results = [celery_app.send_task("auth.keys.rotate", ignore_result=False) for _ in range(4)]
    outcomes = [await asyncio.to_thread(result.get, timeout=30) for result in results]

    after = await _states(engine)
    acted = [actions for actions in outcomes if actions]
    assert len(acted) == 1, outcomes
    old_active = next(kid for kid, state in before.items() if state == "active")
    old_next = next(kid for kid, state in before.items() if state == "next")
    assert after[old_active] == "retired"
    assert after[old_next] == "active"
    assert sorted(after.values()).count("active") == 1
    assert sorted(after.values()).count("next") == 1
    assert len(after) == len(before) + 1


async def test_early_cutover_task_is_refused_with_its_reason(
    celery_app: Celery, worker: WorkerProcess, engine: AsyncEngine, committed_keys: KeySnapshot
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE signing_key SET created_at = now() WHERE state = 'next'"))
    before = await _states(engine)

    result = celery_app.send_task("auth.keys.cutover", ignore_result=False)
    outcome = await asyncio.to_thread(result.get, timeout=30)

    assert len(outcome) == 1
    assert outcome[0].startswith("refused: ")
    assert "may sign from" in outcome[0]
    assert await _states(engine) == before
