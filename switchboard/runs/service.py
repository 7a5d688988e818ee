"""Starting, reading and cancelling runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis

from switchboard.agents.errors import UnknownAgentError
from switchboard.auth.principal import Principal
from switchboard.billing.service import BillingService
from switchboard.conversations.errors import ConversationFullError, ConversationNotFoundError
from switchboard.conversations.settings import ConversationSettings
from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer
from switchboard.kit.tracing import span
from switchboard.models import Run
from switchboard.runs.admission import Admission, Admitted
from switchboard.runs.cancel import raise_cancel_flags
from switchboard.runs.errors import (
    ApprovalDecidedError,
    ConversationBusyError,
    MessageTooLargeError,
    RunFinishedError,
    RunNotFoundError,
    RunNotWaitingError,
    UnknownApprovalError,
)
from switchboard.runs.events import EventPublisher, EventType, RunEvent
from switchboard.runs.jobs import EXECUTE, RESUME
from switchboard.runs.metrics import APPROVAL_LATENCY, BUSY_CHATS
from switchboard.runs.reads import run_read, usage_of
from switchboard.runs.repository import NewRun, RunRepository
from switchboard.runs.schemas import ApprovalDecisions, ChatRequest, MultitaskStrategy, RunRead
from switchboard.runs.settings import RunsSettings
from switchboard.runs.stream_slots import StreamSlot, StreamSlots
from switchboard.runs.turns import ConversationTurns, UnfinishedRun

log = structlog.get_logger("switchboard.runs")

FINISHED = ("succeeded", "failed", "cancelled")
TITLE_CHARS = 80


@dataclass(frozen=True)
class StartedRun:
    run: NewRun
    admitted: Admitted | None
    """None when limits are off."""


@dataclass
class RunService:
    settings: RunsSettings
    publisher: EventPublisher
    runs: RunRepository
    admission: Admission | None = None
    conversations: ConversationSettings = field(default_factory=ConversationSettings)
    redis: Redis | None = None
    """Where the cancel flags of runs a chat interrupts or rolls back are raised."""

    async def start(
        self,
        principal: Principal,
        request: ChatRequest,
        *,
        agents: Collection[str],
        default_agent: str,
        jobs: JobBuffer,
    ) -> StartedRun:
        """Holds a continued conversation (404 not the caller's, 409 full), admits the run
        against the tenant's plan (402/429), each refusal with nothing stored, then stores
        the user's message and a queued run (and the conversation, when new), publishes
        ``run.queued`` (always event 1) and buffers the job, which is sent only after the
        caller commits. Should the rows not commit, the admission is given back."""
        if len(request.message) > self.settings.max_message_chars:
            raise MessageTooLargeError(
                f"The message has {len(request.message)} characters;"
                f" the limit is {self.settings.max_message_chars}."
            )
        agent = request.agent or default_agent
        if agent not in agents:
            raise UnknownAgentError(agent)
        run = NewRun(
            id=uuid.uuid4(),
            tenant_id=principal.tenant_id,
            user_id=principal.subject,
            conversation_id=request.conversation_id or uuid.uuid4(),
            agent=agent,
            message=request.message,
        )
        now = datetime.now(UTC)
        position = None
        waits = False
        if request.conversation_id is not None:
            position, unfinished = await self._hold_conversation(run, now)
            waits = await self._take_turn(run, request.multitask_strategy, unfinished, jobs)
        with span("runs.admit", run_id=str(run.id), tenant_id=str(run.tenant_id)):
            admitted = await self._admit(run, jobs)
        with span("runs.store", run_id=str(run.id), waits=waits, new_conversation=position is None):
            if waits:
                await self.runs.add_waiting(run)
                await self._announce(run)
            else:
                await self._store(run, request, now, position)
            jobs.enqueue(EXECUTE, str(run.id), priority=admitted.priority if admitted else None)
        log.info("runs.queued", run_id=str(run.id), agent=agent, waits=waits)
        return StartedRun(run, admitted)

    async def _take_turn(
        self,
        run: NewRun,
        strategy: MultitaskStrategy,
        unfinished: list[UnfinishedRun],
        jobs: JobBuffer,
    ) -> bool:
        """Under the conversation's lock: whether the run must wait for the conversation's
        unfinished runs, which interrupt and rollback stop (their cancel flags are raised
        once this commits), and reject refuses with nothing stored."""
        if not unfinished:
            return False
        BUSY_CHATS.labels(strategy.value).inc()
        if strategy is MultitaskStrategy.reject:
            raise ConversationBusyError(
                "The conversation has a run in progress; wait for it to end, or send with"
                " multitask_strategy enqueue, interrupt or rollback."
            )
        if strategy is not MultitaskStrategy.enqueue:
            stopped = [other.id for other in unfinished]
            await ConversationTurns(self.runs.session).stop(stopped, strategy)
            for other in unfinished:
                if other.paused:  # no worker holds it: a job ends it, stopped
                    jobs.enqueue(RESUME, str(other.id))
            redis = self.redis

            async def stop_them() -> None:
                if redis is not None:
                    await raise_cancel_flags(redis, stopped, self.settings.buffer_ttl_seconds)

            jobs.on_commit(stop_them)
        return True

    async def _hold_conversation(
        self, run: NewRun, now: datetime
    ) -> tuple[int, list[UnfinishedRun]]:
        """Locks the caller's conversation and gives the position of the chat's message and
        the conversation's unfinished runs; 404 for a conversation not the caller's and 409
        for a full one (the messages of runs waiting their turn count), both before any limit
        (nothing is stored, admitted or queued then).

        Bound: every message, a chat's and a run's replies alike, is written under this lock,
        so chats take turns and each counts the messages of those before it; none is
        accepted into a conversation holding ``max_messages``. A run accepted before the
        conversation filled still stores its replies, so it ends with at most
        ``max_messages`` plus the replies of the runs in flight in it at that moment (one
        run's, when its chats wait for each answer)."""
        position = await self.runs.lock_conversation(run, now=now)
        if position is None:
            raise ConversationNotFoundError("There is no such conversation.")
        unfinished = await ConversationTurns(self.runs.session).unfinished(run.conversation_id)
        held = position + sum(1 for other in unfinished if other.waiting)
        cap = self.conversations.max_messages
        if held >= cap:
            raise ConversationFullError(
                f"The conversation holds {held} messages, the most it may ({cap});"
                " continue in a new conversation."
            )
        return position, unfinished

    async def _admit(self, run: NewRun, jobs: JobBuffer) -> Admitted | None:
        admission = self.admission
        if admission is None:
            return None
        billing = BillingService(self.runs.session)

        async def tokens(tenant_id: uuid.UUID) -> int:
            usage = await billing.usage(tenant_id)
            return usage.input_tokens + usage.output_tokens

        admitted = await admission.admit(
            run.tenant_id, run.id, load_plan=billing.tenant_plan, load_tokens=tokens
        )

        async def give_back() -> None:
            await admission.give_back(run.tenant_id, run.id, admitted)

        jobs.on_rollback(give_back)
        return admitted

    async def _store(
        self, run: NewRun, request: ChatRequest, now: datetime, position: int | None
    ) -> None:
        """``position``: the message's in the conversation held by start; None for a new one."""
        if position is None:
            title = " ".join(request.message.split())[:TITLE_CHARS]
            # Nothing refuses a new conversation, so run.queued goes out while the rows are
            # written. Should the write fail, the event's buffer expires unread: no one can
            # open the stream of a run that does not exist.
            await asyncio.gather(
                self.runs.start_in_new_conversation(run, title=title, now=now),
                self._announce(run),
            )
        else:
            await self.runs.add_to_conversation(run, position=position)
            await self._announce(run)

    async def _announce(self, run: NewRun) -> None:
        await self.publisher.publish(
            str(run.id), EventType.queued, conversation_id=str(run.conversation_id)
        )

    async def _run(self, principal: Principal, run_id: uuid.UUID) -> Run:
        run = await self.runs.owned(principal.tenant_id, principal.subject, run_id)
        if run is None:
            raise RunNotFoundError("There is no such run.")
        return run

    async def get(self, principal: Principal, run_id: uuid.UUID) -> RunRead:
        return run_read(await self._run(principal, run_id))

    async def check_access(self, principal: Principal, run_id: uuid.UUID) -> None:
        await self._run(principal, run_id)

    async def open_stream(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        slots: StreamSlots,
        *,
        jobs: JobBuffer,
        ticket_id: str | None = None,
    ) -> list[StreamSlot]:
        """The slots a new stream holds until it ends: one of its ticket's, when opened with
        one (429 ``runs.ticket_streams_exceeded`` beyond ``streams_per_ticket``), then one of
        the user's (429 ``runs.too_many_streams`` beyond the plan's; none when the plan or the
        settings set no limit). A refusal gives back what was taken. So does the caller's
        rollback: the response that would give them back is never sent then, and the slots
        would stay taken until they lapse."""
        held: list[StreamSlot] = []
        if ticket_id is not None:
            held.append(await slots.take_for_ticket(ticket_id))
        try:
            slot = await self._user_stream_slot(tenant_id, user_id, slots)
        except BaseException:
            await slots.give_back_all(held)
            raise
        if slot is not None:
            held.append(slot)
        if held:

            async def give_back() -> None:
                await slots.give_back_all(held)

            jobs.on_rollback(give_back)
        return held

    async def _user_stream_slot(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, slots: StreamSlots
    ) -> StreamSlot | None:
        if self.admission is None:
            return None
        plan = await self.admission.plan(tenant_id, BillingService(self.runs.session).tenant_plan)
        limit = plan.limits.open_streams_per_user
        if limit is None:
            return None
        return await slots.take(user_id, limit, plan.plan_code)

    async def cancel(
        self, principal: Principal, run_id: uuid.UUID, redis: Redis, jobs: JobBuffer
    ) -> None:
        """Raises the run's cancel flag; whichever worker runs it stops within a moment. A run
        waiting for approvals has no worker: a job ends it (any runs worker takes it)."""
        run = await self._run(principal, run_id)
        if run.status in FINISHED:
            raise RunFinishedError(f"The run has already {run.status}.")
        await raise_cancel_flags(redis, [run.id], self.settings.buffer_ttl_seconds)
        if run.status == "requires_action":
            jobs.enqueue(RESUME, str(run.id))
        log.info("runs.cancel_requested", run_id=str(run.id))

    async def decide(
        self, principal: Principal, run_id: uuid.UUID, body: ApprovalDecisions, jobs: JobBuffer
    ) -> None:
        """Records decisions on the run's pending tool calls, under the run's row lock, so
        decisions racing from several API processes take turns: the one that decides the last
        pending call, and only it, buffers the job that resumes the run. 404 for a run not
        the caller's, 409 ``run.not_waiting`` for a run not waiting for approvals, 422
        ``run.unknown_approval`` for an id that is not one of its approvals (or given twice),
        409 ``run.approval_decided`` for one already decided; nothing is recorded then."""
        held = await self.runs.lock_owned(principal.tenant_id, principal.subject, run_id)
        if held is None:
            raise RunNotFoundError("There is no such run.")
        status, paused_at = held
        approvals = await self.runs.approvals(run_id)
        ids = [decision.id for decision in body.decisions]
        decided = [str(i) for i in ids if i in approvals and approvals[i].decided]
        if decided:
            raise ApprovalDecidedError(f"Already decided: {', '.join(decided)}.")
        if status != "requires_action":
            raise RunNotWaitingError(f"The run is {status}, not waiting for approvals.")
        unknown = [str(i) for i in ids if i not in approvals]
        if unknown or len(set(ids)) != len(ids):
            raise UnknownApprovalError(
                "Each decision must name a different approval of this run; unknown:"
                f" {', '.join(unknown) or 'none'}."
            )
        now = datetime.now(UTC)
        for decision in body.decisions:
            await self.runs.decide(
                decision.id, approved=decision.approve, reason=decision.reason, now=now
            )
        pending = sum(1 for row in approvals.values() if not row.decided) - len(ids)
        log.info("runs.approvals_decided", run_id=str(run_id), decided=len(ids), pending=pending)
        if pending == 0:
            jobs.enqueue(RESUME, str(run_id))
            if paused_at is not None:
                APPROVAL_LATENCY.observe(max(0.0, (now - paused_at).total_seconds()))


async def terminal_event(
    sessionmaker: SessionMaker, run_id: uuid.UUID, seq: int
) -> RunEvent | None:
    """The terminal event of a finished run, rebuilt from Postgres, numbered ``seq``."""
    async with sessionmaker() as session:
        run = await RunRepository(session).get(run_id)
    if run is None or run.status not in FINISHED:
        return None
    data: dict[str, object]
    if run.status == "succeeded":
        kind = EventType.completed
        data = {"usage": usage_of(run).model_dump()}
    elif run.status == "failed":
        kind = EventType.failed
        data = {"error": {"code": run.error_code, "message": run.error_message}}
    else:
        kind, data = EventType.cancelled, {}
    return RunEvent(run_id=str(run.id), seq=seq, type=kind, data=data)
