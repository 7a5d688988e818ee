"""Executes one run on a worker: the agent, its events, and the final state in one commit.

The user's message was stored when the run was created. The assistant's messages are stored
together with the run's final status, so a finished run always has its reply and a failed or
cancelled one never has half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from agents import ItemHelpers, RunConfig, Runner, RunState, TResponseInputItem
from agents.stream_events import StreamEvent
from opentelemetry.trace import INVALID_SPAN, Span
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.agents.context import AgentContext, ToolBackend
from switchboard.agents.registry import AgentRegistry
from switchboard.billing.thresholds import record_thresholds
from switchboard.kit.db import DATABASE_UNAVAILABLE, SessionMaker
from switchboard.kit.jobs import JobSender
from switchboard.kit.tracing import span, start_span
from switchboard.runs.admission import RunSlots
from switchboard.runs.cancel import CancelNotices
from switchboard.runs.emitter import REDIS_DOWN, RunEmitter
from switchboard.runs.events import EventPublisher, EventType, cancel_key, lease_key
from switchboard.runs.failures import TIMEOUT, failure_of
from switchboard.runs.metrics import (
    APPROVALS_REQUESTED,
    QUEUE_WAIT,
    RUNS_ACTIVE,
    RUNS_FAILED,
    RUNS_FINISHED,
    RUNS_STARTED,
    TIME_TO_FIRST_TOKEN,
)
from switchboard.runs.outbound import run_paused
from switchboard.runs.paused import Paused, context_ids, decided_state
from switchboard.runs.repository import ClaimedRun, Decision, PendingApproval, Reply, RunRepository
from switchboard.runs.schemas import Usage
from switchboard.runs.settings import RunsSettings
from switchboard.runs.turns import ConversationTurns, TurnEnd, after_turn
from switchboard.webhooks.jobs import DeliveryRef, deliver_jobs

log = structlog.get_logger("switchboard.runs")

# Pauses between attempts at a claimed run's database work; the lease is renewed before each.
DATABASE_RETRY_DELAYS = (0.5, 1.0, 2.0)

# How long run.started may wait to share a publish with the agent's first event: far below a
# hosted model's time to first token, so a client sees no difference.
STARTED_WITHIN_SECONDS = 0.02

T = TypeVar("T")


class RunCancelled(Exception):
    pass


class RunTimedOut(Exception):
    """The run reached ``RUNS_MAX_SECONDS``; the agent was stopped as a cancel stops it."""


@dataclass
class _Progress:
    agent: str
    events: RunEmitter
    replies: list[Reply] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    """The deltas of the reply being written, sent but not yet a whole message."""
    reported: Usage = field(default_factory=lambda: Usage(input_tokens=0, output_tokens=0))
    """What the provider reported for the model calls that ended."""
    tool_names: dict[str, str] = field(default_factory=dict)
    first_token_at: float | None = None
    first_token: Span = INVALID_SPAN
    """Traced, from the agent's start to its first text delta."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set by a cancel notice
    paused: RunState[Any, Any] | None = None
    """The SDK's state when the agent stopped for tool approvals."""


@dataclass
class RunExecutor:
    sessionmaker: SessionMaker
    redis: Redis
    publisher: EventPublisher
    registry: AgentRegistry
    run_config: Callable[[], RunConfig]
    backend: ToolBackend
    settings: RunsSettings
    notices: CancelNotices
    slots: RunSlots | None = None
    """The tenants' concurrency slots; each run gives its own back when it ends."""
    jobs: JobSender | None = None
    """Sends the job of the run whose turn comes when a run ends in its conversation."""

    async def execute(self, run_id: str) -> str:
        """Runs it if it is queued; returns the final status."""
        wake = asyncio.Event()
        # Notices are watched before the flag is read, so a cancel is seen by one or the other.
        with self.notices.watch(run_id, wake):
            # The lease is taken and the flag read while the claim waits on Postgres. A lease
            # taken for a run that turns out not to be ours lapses by itself.
            with span("runs.claim", run_id=run_id) as claim:
                run, cancelled = await asyncio.gather(self._claim(run_id), self._hold(run_id))
                claim.set_attribute("claimed", run is not None)
            if run is None:
                return "skipped"
            RUNS_STARTED.labels(run.entry_agent).inc()
            QUEUE_WAIT.observe(_seconds_since(run.created_at))
            # Event 1 (run.queued) was published by the API when it created the run.
            events = RunEmitter(self.publisher, run_id, last=1)
            progress = _Progress(agent=run.entry_agent, events=events, wake=wake)
            RUNS_ACTIVE.inc()
            try:
                status = await self._execute(run, progress, cancelled=cancelled)
            finally:
                RUNS_ACTIVE.dec()
        return await self._after(run_id, status)

    async def resume(self, run_id: str) -> str:
        """Continues a run that waited for tool approvals, from its stored state, once every
        approval is decided; ends it cancelled if a cancel or a later chat stopped it. Any
        worker may: nothing of the run stayed on the worker that paused it."""
        wake = asyncio.Event()
        with self.notices.watch(run_id, wake):
            cancelled = await self._hold(run_id)
            claimed = await self._claim_paused(run_id, force=cancelled)
            if claimed is None:
                return "skipped"
            run, raw, decisions = claimed
            paused = Paused.load(raw, decisions)
            events = RunEmitter(self.publisher, run_id, last=paused.last)
            progress = _Progress(
                agent=paused.agent,
                events=events,
                replies=list(paused.replies),
                reported=paused.usage,
                tool_names=dict(paused.tool_names),
                wake=wake,
            )
            RUNS_ACTIVE.inc()
            try:
                status = await self._execute(run, progress, cancelled=cancelled, resume=paused)
            finally:
                RUNS_ACTIVE.dec()
        return await self._after(run_id, status)

    async def _after(self, run_id: str, status: str) -> str:
        if status == "requires_action":
            # A cancel that came while the pause was being written found the run running
            # and sent no job to end it: end it now.
            if await self._cancel_requested(run_id):
                return await self.resume(run_id)
            return status
        RUNS_FINISHED.labels(status).inc()
        return status

    async def _claim_paused(
        self, run_id: str, *, force: bool
    ) -> tuple[ClaimedRun, str, dict[str, Decision]] | None:
        async with self.sessionmaker() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            return await RunRepository(session).claim_paused(uuid.UUID(run_id), force=force)

    async def _execute(
        self,
        run: ClaimedRun,
        progress: _Progress,
        *,
        cancelled: bool,
        resume: Paused | None = None,
    ) -> str:
        if cancelled or run.stop is not None:  # stopped by a cancel or a later chat meanwhile
            await self._finish_cancelled(run, progress)
            return "cancelled"
        if resume is None:
            # Goes out with the agent's first event (one publish, not two) or on its own if the
            # model takes longer; every later event queues behind it.
            progress.events.emit_with_next(
                EventType.started, within=STARTED_WITHIN_SECONDS, agent=run.entry_agent
            )
        try:
            await self._stream(run, progress, resume)
            if progress.paused is not None:
                await self._finish_paused(run, progress, progress.paused)
                return "requires_action"
        except RunCancelled:
            await self._finish_cancelled(run, progress)
            return "cancelled"
        except RunTimedOut:
            log.warning("runs.timed_out", run_id=str(run.id), max_seconds=self.settings.max_seconds)
            await self._finish_failed(run, progress, TIMEOUT.code, TIMEOUT.message)
            return "failed"
        except Exception as exc:
            failure = failure_of(exc)
            # The exception's text goes to the log only; the client gets the fixed message.
            log.exception("runs.failed", run_id=str(run.id), code=failure.code)
            await self._finish_failed(run, progress, failure.code, failure.message)
            return "failed"
        await self._finish_succeeded(run, progress)
        return "succeeded"

    async def _claim(self, run_id: str) -> ClaimedRun | None:
        """Moves the run from queued to running and reads its conversation, in one
        statement; None if the run was taken, finished or deleted. A run redelivered while
        still running (its worker died, or the broker connection dropped and the message came
        back) is left to the sweep, which tells the two apart by the run's lease. Should
        Postgres fail here, nothing is claimed and the task is retried."""
        async with self.sessionmaker() as session:
            # One statement needs no transaction around it: no BEGIN and COMMIT round trips.
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            return await RunRepository(session).claim(
                uuid.UUID(run_id), now=datetime.now(UTC), history=self.settings.history_messages
            )

    async def _stream(self, run: ClaimedRun, progress: _Progress, resume: Paused | None) -> None:
        context = AgentContext(
            tenant_id=str(run.tenant_id),
            user_id=str(run.user_id),
            conversation_id=str(run.conversation_id),
            backend=self.backend,
        )
        agent = self.registry.agent(run.entry_agent)
        start: list[TResponseInputItem] | RunState[Any, Any]
        if resume is None:
            start = [
                {"role": "user" if role == "user" else "assistant", "content": content}
                for role, content in run.history
            ]
        else:
            start = await decided_state(agent, resume, context)
        with span("runs.agent", run_id=str(run.id), agent=run.entry_agent, resumed=bool(resume)):
            if progress.first_token_at is None:
                progress.first_token = start_span("runs.first_token", run_id=str(run.id))
            result = Runner.run_streamed(
                agent, start, context=context, run_config=self.run_config()
            )
            stop, wake = asyncio.Event(), progress.wake
            deadline = time.monotonic() + self.settings.max_seconds
            guard = asyncio.create_task(
                self._guard(str(run.id), result.cancel, stop, wake, deadline)
            )
            try:
                async for event in result.stream_events():
                    await self._translate(run, event, progress)
            finally:
                # A flag, not Task.cancel(): redis-py can swallow a cancellation that lands
                # inside a command, which would leave this await hanging for ever.
                stop.set()
                wake.set()
                stopped = await guard
                if progress.first_token_at is None:  # no text at all: ends with the agent
                    progress.first_token.end()
            usage = result.context_wrapper.usage  # every ended model call's, summed by the SDK
            progress.reported = Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.input_tokens_details.cached_tokens,
            )
        if stopped is not None:
            raise stopped
        progress.agent = result.last_agent.name
        if result.interruptions:
            progress.paused = result.to_state()

    async def _guard(
        self,
        run_id: str,
        cancel: Callable[[], None],
        stop: asyncio.Event,
        wake: asyncio.Event,
        deadline: float,
    ) -> RunCancelled | RunTimedOut | None:
        """Until ``stop``: renews the run's lease, watches its cancel flag and its deadline.

        A cancel notice sets ``wake`` at once; reading the flag now and then covers a notice
        missed while Redis was away. Neither needs a connection per run. The first read is
        _hold's, just before, with notices already watched. ``cancel`` stops the agent: the
        SDK cancels its task, which closes the model's HTTP stream; the events end, and
        what the guard returns says why.
        """
        renew_every = self.settings.lease_seconds / 3
        poll_every = self.settings.cancel_poll_seconds
        renewed = polled = time.monotonic()
        while not stop.is_set():
            noticed = wake.is_set()
            wake.clear()
            now = time.monotonic()
            if noticed or now - polled >= poll_every:
                polled = now
                if await self._cancel_requested(run_id):
                    cancel()
                    return RunCancelled()
            if time.monotonic() >= deadline:
                cancel()
                return RunTimedOut()
            if now - renewed >= renew_every:
                await self._renew_lease(run_id)
                renewed = now
            pause = min(polled + poll_every, renewed + renew_every, deadline) - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(pause, 0.01))
        return None

    async def _hold(self, run_id: str) -> bool:
        """Takes the run's lease and reads its cancel flag, in one round trip."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(lease_key(run_id), b"1", ex=self.settings.lease_seconds)
                pipe.exists(cancel_key(run_id))
                _, cancelled = await pipe.execute()
        except REDIS_DOWN:
            return False  # Redis is away: the run goes on, and so do its cancel checks
        return bool(cancelled)

    async def _cancel_requested(self, run_id: str) -> bool:
        try:
            return bool(await self.redis.exists(cancel_key(run_id)))
        except REDIS_DOWN:
            return False  # Redis is away: the run goes on, and so do its cancel checks

    async def _renew_lease(self, run_id: str) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            await self.redis.set(lease_key(run_id), b"1", ex=self.settings.lease_seconds)

    async def _translate(self, run: ClaimedRun, event: StreamEvent, progress: _Progress) -> None:
        emit = progress.events.emit
        if event.type == "raw_response_event":
            if event.data.type == "response.output_text.delta":
                if progress.first_token_at is None:
                    progress.first_token_at = time.monotonic()
                    progress.first_token.end()
                    TIME_TO_FIRST_TOKEN.observe(_seconds_since(run.created_at))
                # Deltas go out in the background, several per call when the model is fast;
                # every other event waits for them, so the order never changes.
                progress.partial.append(event.data.delta)
                progress.events.emit_soon(
                    EventType.message_delta, delta=event.data.delta, agent=progress.agent
                )
        elif event.type == "agent_updated_stream_event":
            if event.new_agent.name != progress.agent:
                progress.agent = event.new_agent.name
                await emit(EventType.agent_updated, agent=progress.agent)
        elif event.name == "tool_called":
            raw: Any = event.item.raw_item
            name = str(getattr(raw, "name", "tool"))
            call_id = str(getattr(raw, "call_id", ""))
            progress.tool_names[call_id] = name
            await emit(
                EventType.tool_called,
                tool=name,
                arguments=_arguments(getattr(raw, "arguments", "")),
                agent=progress.agent,
            )
        elif event.name == "tool_output":
            output_raw: Any = event.item.raw_item
            call_id = str(
                output_raw.get("call_id", "")
                if isinstance(output_raw, dict)
                else getattr(output_raw, "call_id", "")
            )
            output: Any = getattr(event.item, "output", "")
            await emit(
                EventType.tool_output,
                tool=progress.tool_names.get(call_id, "tool"),
                output=str(output),
            )
        elif event.name == "message_output_created":
            text = ItemHelpers.text_message_output(event.item)  # type: ignore[arg-type]
            progress.partial.clear()  # its deltas, now a whole message
            if text:
                progress.replies.append(Reply(uuid.uuid4(), text, progress.agent))

    async def _finish_succeeded(self, run: ClaimedRun, progress: _Progress) -> None:
        usage = progress.reported

        async def write(session: AsyncSession) -> TurnEnd | None:
            # Billed with the reply, in the same commit: a finished run is metered once.
            ended = await RunRepository(session).finish_succeeded(
                run,
                agent=progress.agent,
                usage=usage,
                replies=progress.replies,
                now=datetime.now(UTC),
            )
            return await _end_turn(session, run) if ended else None

        turn = await self._with_database(run, write)
        await self._release(run, usage.input_tokens + usage.output_tokens if turn else 0)
        if turn is None:
            return
        if turn.rolled_back:  # a later chat rolled it back as it ended
            await progress.events.emit(EventType.cancelled)
            await self._end(run, progress, turn)
            return
        _emit_replies(progress, progress.replies)  # sent with run.completed, in one call
        await progress.events.emit(EventType.completed, usage=usage.model_dump())
        await self._end(run, progress, turn)
        log.info("runs.succeeded", run_id=str(run.id), **usage.model_dump())
        # After the run is done with: it logs its own failures and never fails the run.
        await record_thresholds(self.sessionmaker, run.tenant_id, datetime.now(UTC), self.jobs)

    async def _finish_paused(
        self, run: ClaimedRun, progress: _Progress, state: RunState[Any, Any]
    ) -> None:
        """The agent called tools that need a person's approval: the SDK's state goes to
        Postgres with the calls it waits on, then ``run.requires_action`` goes out, and the
        worker lets go of the run (its lease, its slot, its thread). The conversation's turn
        stays with it."""
        pending = [
            PendingApproval(
                id=uuid.uuid4(),
                call_id=str(item.call_id),
                tool=str(item.tool_name or "tool"),
                arguments=str(item.arguments or ""),
                agent=item.agent.name,
            )
            for item in state.get_interruptions()
        ]
        await progress.events.flush(within=self.settings.publish_retry_seconds)
        paused = Paused(
            state=state.to_string(context_serializer=context_ids),
            agent=progress.agent,
            # The number run.requires_action will have: the resumed run's events follow it.
            last=progress.events.last + progress.events.pending + 1,
            replies=progress.replies,
            usage=progress.reported,
            tool_names=progress.tool_names,
        )

        approvals = [
            {
                "id": str(approval.id),
                "tool": approval.tool,
                "arguments": _arguments(approval.arguments),
                "agent": approval.agent,
            }
            for approval in pending
        ]

        async def write(session: AsyncSession) -> list[DeliveryRef] | None:
            repository = RunRepository(session)
            if not await repository.pause(
                run.id, paused=paused.dump(), approvals=pending, now=datetime.now(UTC)
            ):
                return None
            stored = await repository.get(run.id)
            assert stored is not None
            return await run_paused(session, stored, approvals)

        deliveries = await self._with_database(run, write)
        await self._release(run)
        if deliveries is None:  # deleted with its conversation meanwhile
            return
        APPROVALS_REQUESTED.inc(len(pending))
        await self._send_deliveries(deliveries)
        await progress.events.emit(EventType.requires_action, approvals=approvals)
        await progress.events.flush(within=self.settings.publish_retry_seconds)
        with contextlib.suppress(*REDIS_DOWN):
            await self.redis.delete(lease_key(str(run.id)))
        log.info("runs.requires_action", run_id=str(run.id), approvals=len(pending))

    async def _finish_failed(
        self, run: ClaimedRun, progress: _Progress, code: str, message: str
    ) -> None:
        async def write(session: AsyncSession) -> TurnEnd | None:
            repository = RunRepository(session)
            if await repository.lock_conversation_of(run.id) is None:
                return None  # deleted, with its conversation
            ended = await repository.finish_failed(
                run.id, code=code, message=message, now=datetime.now(UTC)
            )
            return await _end_turn(session, run) if ended else None

        turn = await self._with_database(run, write)
        await self._release(run)
        if turn is not None:
            RUNS_FAILED.labels(code).inc()
            await progress.events.emit(EventType.failed, error={"code": code, "message": message})
            await self._end(run, progress, turn)

    async def _finish_cancelled(self, run: ClaimedRun, progress: _Progress) -> None:
        """Keeps what the client was sent: the whole replies, the one cut short marked
        ``incomplete``, and the tokens used (the cut call's estimated: no usage comes for it)."""
        replies, usage = list(progress.replies), progress.reported
        if partial := "".join(progress.partial):
            replies.append(Reply(uuid.uuid4(), partial, progress.agent, incomplete=True))
            usage = _with_cut_call(usage, run, replies)

        async def write(session: AsyncSession) -> TurnEnd | None:
            ended = await RunRepository(session).finish_cancelled(
                run, agent=progress.agent, usage=usage, replies=replies, now=datetime.now(UTC)
            )
            return await _end_turn(session, run) if ended else None

        turn = await self._with_database(run, write)
        await self._release(run, usage.input_tokens + usage.output_tokens if turn else 0)
        if turn is not None:
            if not turn.rolled_back:  # rolled back: its messages are gone with it
                _emit_replies(progress, replies)
            await progress.events.emit(EventType.cancelled)
            await self._end(run, progress, turn)
            log.info("runs.cancelled", run_id=str(run.id))

    async def _with_database(
        self, run: ClaimedRun, work: Callable[[AsyncSession], Awaitable[T]]
    ) -> T:
        """One transaction of a claimed run, tried again while Postgres is briefly out of
        reach (down, or every pooled connection busy under load). Should the final write never
        commit, the run's lease lapses and the sweep fails it, so its streams still end;
        whichever commits first wins."""
        for delay in (*DATABASE_RETRY_DELAYS, None):
            try:
                with span("runs.finish", run_id=str(run.id)):
                    async with self.sessionmaker() as session, session.begin():
                        return await work(session)
            except DATABASE_UNAVAILABLE as exc:
                if delay is None:
                    raise
                log.warning("runs.database_retried", run_id=str(run.id), error=type(exc).__name__)
                await self._renew_lease(str(run.id))  # still ours: keep the sweep away
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send_deliveries(self, deliveries: list[DeliveryRef]) -> None:
        """After their commit; should the broker refuse, the webhooks dispatcher sends them."""
        if not deliveries or self.jobs is None:
            return
        try:
            await self.jobs.send(deliver_jobs(deliveries))
        except Exception:
            log.exception("runs.webhooks_not_sent", deliveries=len(deliveries))

    async def _release(self, run: ClaimedRun, tokens: int = 0) -> None:
        """The run is over in Postgres (or gone): its slot goes back before its terminal event
        goes out, so a client that reads the event and chats again finds the slot free.
        Should Redis refuse, the sweep takes the slot back."""
        if self.slots is None:
            return
        try:
            await self.slots.release(run.tenant_id, run.id, tokens=tokens)
        except REDIS_DOWN as exc:
            log.warning("runs.slot_not_released", run_id=str(run.id), error=type(exc).__name__)

    async def _end(self, run: ClaimedRun, progress: _Progress, turn: TurnEnd) -> None:
        """The final state is committed: deliver what Redis still owes, drop the lease, and
        start the run whose turn it is."""
        await progress.events.flush(within=self.settings.publish_retry_seconds)
        with contextlib.suppress(*REDIS_DOWN):
            await self.redis.delete(lease_key(str(run.id)))
        await after_turn(self.jobs, turn)


async def _end_turn(session: AsyncSession, run: ClaimedRun) -> TurnEnd:
    return await ConversationTurns(session).end(run.id, run.conversation_id, datetime.now(UTC))


def _emit_replies(progress: _Progress, replies: list[Reply]) -> None:
    for reply in replies:
        progress.events.emit_soon(
            EventType.message_completed,
            message_id=str(reply.message_id),
            content=reply.content,
            agent=reply.agent,
            incomplete=reply.incomplete,
        )


def _with_cut_call(usage: Usage, run: ClaimedRun, replies: list[Reply]) -> Usage:
    """``usage`` plus an estimate of the model call a cancel cut short, which the provider
    reports nothing for: it read the history and the replies before it, and wrote the last
    reply's text so far."""
    read = sum(len(content) for _, content in run.history)
    read += sum(len(reply.content) for reply in replies[:-1])
    return Usage(
        input_tokens=usage.input_tokens + estimated_tokens(read),
        output_tokens=usage.output_tokens + estimated_tokens(len(replies[-1].content)),
        cached_input_tokens=usage.cached_input_tokens,
    )


def estimated_tokens(characters: int) -> int:
    """OpenAI's rule of thumb for English text: about 4 characters a token."""
    return -(-characters // 4)


def _seconds_since(moment: datetime) -> float:
    return max(0.0, (datetime.now(UTC) - moment).total_seconds())


def _arguments(raw: object) -> object:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return raw
    return raw
