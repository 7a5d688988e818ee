"""Runs take turns in a conversation: one starts at a time, the others wait in order.

A chat into a conversation with an unfinished run is decided under the conversation's lock by
its ``multitask_strategy``, so two API processes can never both start a run in it. A run that
waits keeps its message aside (``pending_message``): the message joins the conversation when
the run's turn comes, after the replies of the runs before it, so every run reads the
conversation as it was when it started and positions follow the order things were said.

The turn passes in the transaction that writes a run's final state (whoever writes it: the
worker, or the sweep for a run whose worker was lost), under the same lock; the next run's job
is sent after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.conversations.repository import next_position_query
from switchboard.kit.jobs import Job, JobSender
from switchboard.models import Message, Run
from switchboard.runs.jobs import EXECUTE
from switchboard.runs.outbound import run_ended
from switchboard.runs.schemas import MultitaskStrategy
from switchboard.webhooks.jobs import DeliveryRef, deliver_jobs

log = structlog.get_logger("switchboard.runs")


# A run waiting for tool approvals is unfinished: the conversation's turn stays with it.
UNFINISHED = ("queued", "running", "requires_action")

_run: Table = Run.__table__  # type: ignore[assignment]
_message: Table = Message.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class UnfinishedRun:
    id: uuid.UUID
    waiting: bool
    """Waiting for its turn: its message is not in the conversation yet."""
    paused: bool = False
    """Waiting for tool approvals: no worker holds it."""


@dataclass(frozen=True)
class TurnEnd:
    rolled_back: bool
    """The run was rolled back by a later chat: it and its messages are gone."""
    next_run: uuid.UUID | None
    """The run whose turn it is now: queued, its job to be sent after the commit."""
    deliveries: Sequence[DeliveryRef] = ()
    """The outbound webhook deliveries of the run's end, to be sent after the commit."""


class ConversationTurns:
    """Reads and writes under the conversation's lock, taken by the caller."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def unfinished(self, conversation_id: uuid.UUID) -> list[UnfinishedRun]:
        """The conversation's queued and running runs (waiting ones included), oldest first."""
        query = (
            select(
                _run.c.id,
                _run.c.pending_message.is_not(None).label("waiting"),
                (_run.c.status == "requires_action").label("paused"),
            )
            .where(_run.c.conversation_id == conversation_id, _run.c.status.in_(UNFINISHED))
            .order_by(_run.c.created_at, _run.c.id)
        )
        rows = await self.session.execute(query)
        return [UnfinishedRun(row.id, row.waiting, row.paused) for row in rows]

    async def stop(self, run_ids: Sequence[uuid.UUID], how: MultitaskStrategy) -> None:
        """Marks these runs to be stopped by ``how`` (interrupt or rollback) when they end."""
        await self.session.execute(
            update(_run)
            .where(_run.c.id.in_(run_ids), _run.c.status.in_(UNFINISHED), _run.c.stop.is_(None))
            .values(stop=how.value)
        )

    async def end(self, run_id: uuid.UUID, conversation_id: uuid.UUID, now: datetime) -> TurnEnd:
        """After the final write of ``run_id``: rolls it back if a later chat asked, and gives
        the turn to the next waiting run."""
        ended = (
            await self.session.execute(
                select(_run.c.tenant_id, _run.c.status, _run.c.stop).where(_run.c.id == run_id)
            )
        ).one()  # its final write is in this transaction
        rolled_back = ended.stop == MultitaskStrategy.rollback
        deliveries = await run_ended(
            self.session, run_id, ended.tenant_id, ended.status, rolled_back=rolled_back
        )
        if rolled_back:
            await self.session.execute(delete(_message).where(_message.c.run_id == run_id))
            await self.session.execute(delete(_run).where(_run.c.id == run_id))
        return TurnEnd(rolled_back, await self._pass_turn(conversation_id, now), deliveries)

    async def _pass_turn(self, conversation_id: uuid.UUID, now: datetime) -> uuid.UUID | None:
        # One read: a run holding the turn (its message is in) sorts before every waiting one.
        first = (
            await self.session.execute(
                select(_run.c.id, _run.c.pending_message)
                .where(_run.c.conversation_id == conversation_id, _run.c.status.in_(UNFINISHED))
                .order_by(_run.c.pending_message.is_not(None), _run.c.created_at, _run.c.id)
                .limit(1)
            )
        ).first()
        if first is None or first.pending_message is None:
            return None
        waiting = first
        position = await self.session.scalar(next_position_query(conversation_id))
        await self.session.execute(
            insert(_message).values(
                id=uuid.uuid4(),
                conversation_id=conversation_id,
                position=position,
                role="user",
                content=waiting.pending_message,
                incomplete=False,
                run_id=waiting.id,
            )
        )
        await self.session.execute(
            update(_run).where(_run.c.id == waiting.id).values(pending_message=None, queued_at=now)
        )
        return uuid.UUID(str(waiting.id))


async def after_turn(jobs: JobSender | None, turn: TurnEnd) -> None:
    """Sends, after the commit that ended a run, the job of the run whose turn came and the
    run's webhook deliveries. Should the broker refuse, the next run stays queued and the sweep
    fails it after ``RUNS_QUEUE_TIMEOUT``; the deliveries go when the webhooks dispatcher
    finds them."""
    pending = deliver_jobs(turn.deliveries)
    if turn.next_run is not None:
        pending.insert(0, Job(EXECUTE, (str(turn.next_run),)))
    if jobs is None or not pending:
        return
    try:
        await jobs.send(pending)
    except Exception:
        log.exception(
            "runs.after_turn_not_sent",
            next_run_id=str(turn.next_run) if turn.next_run else None,
            deliveries=len(turn.deliveries),
        )
