"""Executes one run on a worker: the agent, its events, and the final state in one commit.

The user's message was stored when the run was created. The assistant's messages are stored
together with the run's final status, so a finished run always has its reply and a failed or
cancelled one never has half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from agents import ItemHelpers, RunConfig, Runner, TResponseInputItem
from agents.stream_events import StreamEvent
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.agents.context import AgentContext, ToolBackend
from switchboard.agents.registry import AgentRegistry
from switchboard.conversations.repository import ConversationRepository
from switchboard.kit.db import SessionMaker
from switchboard.models import Message, Run
from switchboard.runs.events import EventPublisher, EventType, cancel_key
from switchboard.runs.settings import RunsSettings

log = structlog.get_logger("switchboard.runs")


class RunCancelled(Exception):
    pass


@dataclass
class _Reply:
    message_id: uuid.UUID
    content: str
    agent: str


@dataclass
class _Progress:
    agent: str
    replies: list[_Reply] = field(default_factory=list)
    tool_names: dict[str, str] = field(default_factory=dict)


@dataclass
class RunExecutor:
    sessionmaker: SessionMaker
    redis: Redis
    publisher: EventPublisher
    registry: AgentRegistry
    run_config: Callable[[], RunConfig]
    backend: ToolBackend
    settings: RunsSettings

    async def execute(self, run_id: str) -> str:
        """Runs it if it is queued; returns the final status."""
        run = await self._claim(run_id)
        if run is None:
            return "skipped"
        if await self.redis.exists(cancel_key(run_id)):
            await self._finish_cancelled(run, _Progress(agent=run.entry_agent))
            return "cancelled"
        await self.publisher.publish(run_id, EventType.started, agent=run.entry_agent)
        progress = _Progress(agent=run.entry_agent)
        try:
            usage = await self._stream(run, progress)
        except RunCancelled:
            await self._finish_cancelled(run, progress)
            return "cancelled"
        except Exception as exc:
            log.exception("runs.failed", run_id=run_id)
            await self._finish_failed(run, "agent_error", _safe_message(exc))
            return "failed"
        await self._finish_succeeded(run, progress, usage)
        return "succeeded"

    async def _claim(self, run_id: str) -> Run | None:
        """Moves the run from queued to running, or finds it taken or gone."""
        async with self.sessionmaker() as session, session.begin():
            claimed: Run | None = await session.scalar(
                update(Run)
                .where(Run.id == uuid.UUID(run_id), Run.status == "queued")
                .values(status="running", started_at=datetime.now(UTC), attempt=Run.attempt + 1)
                .returning(Run)
            )
            if claimed is not None:
                return claimed
            run = await session.get(Run, uuid.UUID(run_id))
        if run is not None and run.status == "running":
            # Delivered again after the worker running it died: its events and partial reply
            # are gone with that worker, so the run fails rather than answering twice.
            await self._finish_failed(run, "worker_lost", "The worker running this run was lost.")
        return None

    async def _history(self, run: Run) -> list[TResponseInputItem]:
        async with self.sessionmaker() as session:
            messages = await ConversationRepository(session).messages(
                run.conversation_id, last=self.settings.history_messages
            )
        items: list[TResponseInputItem] = []
        for message in messages:
            role = "user" if message.role == "user" else "assistant"
            items.append({"role": role, "content": message.content})  # type: ignore[misc,arg-type]
        return items

    async def _stream(self, run: Run, progress: _Progress) -> dict[str, int]:
        context = AgentContext(
            tenant_id=str(run.tenant_id),
            user_id=str(run.user_id),
            conversation_id=str(run.conversation_id),
            backend=self.backend,
        )
        result = Runner.run_streamed(
            self.registry.agent(run.entry_agent),
            await self._history(run),
            context=context,
            run_config=self.run_config(),
        )
        watcher = asyncio.create_task(self._watch_cancel(str(run.id), result.cancel))
        try:
            async for event in result.stream_events():
                await self._translate(str(run.id), event, progress)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if watcher_cancelled(watcher):
            raise RunCancelled
        usage = result.context_wrapper.usage
        progress.agent = result.last_agent.name
        return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}

    async def _watch_cancel(self, run_id: str, cancel: Callable[[], None]) -> bool:
        # Polling a key keeps cancel working from any API process to any worker, with no
        # connection per run; the period bounds how late a cancel lands.
        while not await self.redis.exists(cancel_key(run_id)):  # noqa: ASYNC110
            await asyncio.sleep(self.settings.cancel_poll_seconds)
        cancel()
        return True

    async def _translate(self, run_id: str, event: StreamEvent, progress: _Progress) -> None:
        publish = self.publisher.publish
        if event.type == "raw_response_event":
            if event.data.type == "response.output_text.delta":
                await publish(
                    run_id, EventType.message_delta, delta=event.data.delta, agent=progress.agent
                )
        elif event.type == "agent_updated_stream_event":
            if event.new_agent.name != progress.agent:
                progress.agent = event.new_agent.name
                await publish(run_id, EventType.agent_updated, agent=progress.agent)
        elif event.name == "tool_called":
            raw: Any = event.item.raw_item
            name = str(getattr(raw, "name", "tool"))
            call_id = str(getattr(raw, "call_id", ""))
            progress.tool_names[call_id] = name
            await publish(
                run_id,
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
            await publish(
                run_id,
                EventType.tool_output,
                tool=progress.tool_names.get(call_id, "tool"),
                output=str(output),
            )
        elif event.name == "message_output_created":
            text = ItemHelpers.text_message_output(event.item)  # type: ignore[arg-type]
            if text:
                progress.replies.append(_Reply(uuid.uuid4(), text, progress.agent))

    async def _finish_succeeded(self, run: Run, progress: _Progress, usage: dict[str, int]) -> None:
        async with self.sessionmaker() as session, session.begin():
            finished = await self._set_final(
                session,
                run,
                status="succeeded",
                final_agent=progress.agent,
                input_tokens=usage["input_tokens"],
                output_tokens=usage["output_tokens"],
            )
            if finished:
                position = await ConversationRepository(session).next_position(run.conversation_id)
                session.add_all(
                    Message(
                        id=reply.message_id,
                        conversation_id=run.conversation_id,
                        position=position + offset,
                        role="assistant",
                        content=reply.content,
                        agent=reply.agent,
                        run_id=run.id,
                        output_tokens=usage["output_tokens"] if offset == 0 else None,
                    )
                    for offset, reply in enumerate(progress.replies)
                )
        if not finished:
            return
        for reply in progress.replies:
            await self.publisher.publish(
                str(run.id),
                EventType.message_completed,
                message_id=str(reply.message_id),
                content=reply.content,
                agent=reply.agent,
            )
        await self.publisher.publish(str(run.id), EventType.completed, usage=usage)
        log.info("runs.succeeded", run_id=str(run.id), **usage)

    async def _finish_failed(self, run: Run, code: str, message: str) -> None:
        async with self.sessionmaker() as session, session.begin():
            finished = await self._set_final(
                session, run, status="failed", error_code=code, error_message=message
            )
        if finished:
            await self.publisher.publish(
                str(run.id), EventType.failed, error={"code": code, "message": message}
            )

    async def _finish_cancelled(self, run: Run, progress: _Progress) -> None:
        async with self.sessionmaker() as session, session.begin():
            finished = await self._set_final(
                session, run, status="cancelled", final_agent=progress.agent
            )
        if finished:
            await self.publisher.publish(str(run.id), EventType.cancelled)
            log.info("runs.cancelled", run_id=str(run.id))

    async def _set_final(self, session: AsyncSession, run: Run, **values: Any) -> bool:
        """False if the run was deleted (with its conversation) or finished meanwhile."""
        updated = await session.scalar(
            update(Run)
            .where(Run.id == run.id, Run.status.in_(("queued", "running")))
            .values(finished_at=datetime.now(UTC), **values)
            .returning(Run.id)
        )
        return updated is not None


def watcher_cancelled(watcher: asyncio.Task[bool]) -> bool:
    return watcher.done() and not watcher.cancelled() and watcher.result() is True


def _arguments(raw: object) -> object:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return raw
    return raw


def _safe_message(exc: Exception) -> str:
    # Provider errors can be long and carry request details; the client needs the gist.
    return f"{type(exc).__name__}: {str(exc)[:300]}"
