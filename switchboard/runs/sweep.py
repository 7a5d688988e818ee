"""Ending runs nobody will finish: their worker died, or their job never reached a worker.

A worker holds a lease on each run it executes (a Redis key it renews every third of
``RUNS_LEASE_SECONDS``). The sweep, run by beat, fails a running run whose lease has been
missing on two sightings at least a lease apart (so a Redis restart, which drops every lease
until the workers renew them, fails nothing), a queued run older than
``RUNS_QUEUE_TIMEOUT_SECONDS`` (its job was lost, for example with a Redis that keeps nothing
on disk), and a run waiting for tool approvals longer than ``RUNS_APPROVAL_TIMEOUT_SECONDS``
(``approval_expired``). Each gets its ``run.failed`` event, so open streams end instead of waiting.

Then it reconciles the tenants' concurrency slots with Postgres: a slot whose run is no longer
queued or running (its finish never gave it back: a worker killed after its commit, Redis
away at that moment), or whose run never reached Postgres within ``RUNS_SLOT_GRACE_SECONDS``
(an API process died between admission and commit), is taken back.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from redis.asyncio import Redis

from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobSender
from switchboard.runs.admission import RunSlots
from switchboard.runs.emitter import RunEmitter
from switchboard.runs.events import EventPublisher, EventType, lease_key, suspect_key
from switchboard.runs.metrics import (
    RUNS_ADMITTED,
    RUNS_FAILED,
    RUNS_FINISHED,
    RUNS_WAITING,
    SLOTS_RECLAIMED,
)
from switchboard.runs.repository import RunRepository
from switchboard.runs.settings import RunsSettings
from switchboard.runs.turns import ConversationTurns, after_turn

log = structlog.get_logger("switchboard.runs")

WORKER_LOST = ("worker_lost", "The worker running this run was lost.")
QUEUE_TIMEOUT = ("queue_timeout", "No worker started this run in time.")
APPROVAL_EXPIRED = (
    "approval_expired",
    "The run waited too long for its tool calls to be approved and was stopped.",
)


@dataclass(frozen=True)
class SweepReport:
    suspected: int
    lost: int
    expired: int
    reclaimed: int = 0
    approvals_expired: int = 0


async def fail_run(
    sessionmaker: SessionMaker,
    publisher: EventPublisher,
    run_id: uuid.UUID,
    *,
    status: str,
    error: tuple[str, str],
    jobs: JobSender | None = None,
) -> bool:
    """Fails the run if it is still in ``status``; True if this call ended it. The turn in
    its conversation passes to the next run waiting, whose job goes through ``jobs``."""
    code, message = error
    async with sessionmaker() as session, session.begin():
        runs = RunRepository(session)
        conversation_id = await runs.lock_conversation_of(run_id)
        if conversation_id is None:
            return False  # deleted, with its conversation
        ended = await runs.fail_in_status(
            run_id, status=status, code=code, message=message, now=datetime.now(UTC)
        )
        if ended:
            turn = await ConversationTurns(session).end(run_id, conversation_id, datetime.now(UTC))
    if not ended:
        return False
    RUNS_FINISHED.labels("failed").inc()
    RUNS_FAILED.labels(code).inc()
    log.warning("runs.ended_by_sweep", run_id=str(run_id), code=code)
    # The final state is committed; the event is best effort and the stream falls back to
    # Postgres if Redis cannot take it now.
    events = RunEmitter(publisher, str(run_id))
    await events.emit(EventType.failed, error={"code": code, "message": message})
    await events.flush(within=2)
    await after_turn(jobs, turn)
    return True


async def fail_lost_run(
    sessionmaker: SessionMaker,
    publisher: EventPublisher,
    run_id: uuid.UUID,
    jobs: JobSender | None = None,
) -> bool:
    return await fail_run(
        sessionmaker, publisher, run_id, status="running", error=WORKER_LOST, jobs=jobs
    )


async def sweep_runs(
    sessionmaker: SessionMaker,
    redis: Redis,
    publisher: EventPublisher,
    settings: RunsSettings,
    *,
    batch: int = 500,
    slots: RunSlots | None = None,
    jobs: JobSender | None = None,
) -> SweepReport:
    now = datetime.now(UTC)
    lease = timedelta(seconds=settings.lease_seconds)
    async with sessionmaker() as session:
        runs = RunRepository(session)
        running = await runs.running_started_before(now - lease, limit=batch)
        stale = await runs.queued_created_before(
            now - timedelta(seconds=settings.queue_timeout_seconds), limit=batch
        )
        unanswered = await runs.waiting_paused_before(
            now - timedelta(seconds=settings.approval_timeout_seconds), limit=batch
        )
    suspected, lost = await _without_lease(redis, running, settings.lease_seconds)
    ended = 0
    for run_id in lost:
        ended += await fail_lost_run(sessionmaker, publisher, run_id, jobs)
    expired = 0
    for run_id in stale:
        expired += await fail_run(
            sessionmaker, publisher, run_id, status="queued", error=QUEUE_TIMEOUT, jobs=jobs
        )
    approvals_expired = 0
    for run_id in unanswered:
        approvals_expired += await fail_run(
            sessionmaker,
            publisher,
            run_id,
            status="requires_action",
            error=APPROVAL_EXPIRED,
            jobs=jobs,
        )
    async with sessionmaker() as session:
        RUNS_WAITING.set(await RunRepository(session).count_waiting())
    reclaimed = 0
    if slots is not None:
        reclaimed = await reconcile_slots(sessionmaker, slots, settings)
    report = SweepReport(
        suspected=len(suspected),
        lost=ended,
        expired=expired,
        reclaimed=reclaimed,
        approvals_expired=approvals_expired,
    )
    if suspected or ended or expired or reclaimed or approvals_expired:
        log.info(
            "runs.swept",
            suspected=len(suspected),
            lost=ended,
            expired=expired,
            reclaimed=reclaimed,
            approvals_expired=approvals_expired,
        )
    return report


IN_FLIGHT = ("queued", "running")


async def reconcile_slots(
    sessionmaker: SessionMaker, slots: RunSlots, settings: RunsSettings
) -> int:
    """Takes back every slot whose run is over, or never appeared; returns how many."""
    reclaimed = held = 0
    now = await slots.redis_time()
    for tenant_id in await slots.tenants():
        taken = await slots.held(tenant_id)
        async with sessionmaker() as session:
            statuses = await RunRepository(session).statuses([run_id for run_id, _ in taken])
        stale = [
            run_id
            for run_id, admitted_at in taken
            if statuses.get(run_id) not in IN_FLIGHT
            and (run_id in statuses or now - admitted_at > settings.slot_grace_seconds)
        ]
        held += await slots.remove(tenant_id, stale)
        reclaimed += len(stale)
    RUNS_ADMITTED.set(held)
    if reclaimed:
        SLOTS_RECLAIMED.inc(reclaimed)
    return reclaimed


async def _without_lease(
    redis: Redis, runs: list[uuid.UUID], lease_seconds: int
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Runs seen without a lease for the first time, and those missing it for a lease."""
    if not runs:
        return [], []
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in runs:
            pipe.exists(lease_key(str(run_id)))
        held = await pipe.execute()
    missing = [run_id for run_id, has_lease in zip(runs, held, strict=True) if not has_lease]
    if not missing:
        return [], []
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in missing:
            # The first sighting is kept (NX); a renewed lease does not clear it, so it
            # expires on its own well after a live worker would have renewed.
            pipe.set(suspect_key(str(run_id)), str(now), nx=True, ex=lease_seconds * 4)
            pipe.get(suspect_key(str(run_id)))
        answers = await pipe.execute()
    suspected: list[uuid.UUID] = []
    lost: list[uuid.UUID] = []
    for index, run_id in enumerate(missing):
        first_seen = float(answers[2 * index + 1] or now)
        (lost if now - first_seen >= lease_seconds else suspected).append(run_id)
    return suspected, lost
