"""Chat: start agent runs, read them, follow their events, cancel them."""

from __future__ import annotations

import contextlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse

from api.deps import (
    AppResources,
    AppSettings,
    Authority,
    CurrentPrincipal,
    Hub,
    Registry,
    Runs,
    StreamAccess,
    Streams,
    UoW,
)
from api.sse import event_stream
from switchboard.auth.principal import Principal
from switchboard.auth.tokens import TokenType
from switchboard.runs.admission import StreamSlot, StreamSlots
from switchboard.runs.errors import InvalidLastEventIdError
from switchboard.runs.events import RunEvent
from switchboard.runs.hub import EventHub
from switchboard.runs.schemas import ChatAccepted, ChatRequest, RunRead
from switchboard.runs.service import terminal_event
from switchboard.runs.stream import follow_batches

router = APIRouter(prefix="/api/v1", tags=["chat"])

STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."}
}


async def _stream_url(authority: Authority, principal: Principal, run_id: uuid.UUID) -> str:
    ticket = await authority.issue(
        TokenType.stream_ticket,
        str(principal.subject),
        {"run": str(run_id), "tid": str(principal.tenant_id)},
    )
    return f"/api/v1/runs/{run_id}/stream?ticket={ticket.token}"


@router.post("/chat", status_code=202, response_model=ChatAccepted)
async def chat(
    body: ChatRequest,
    principal: CurrentPrincipal,
    runs: Runs,
    registry: Registry,
    uow: UoW,
    authority: Authority,
    response: Response,
) -> ChatAccepted:
    """Queue an agent run for a message. Follow it at `stream_url` (which carries a ticket
    for that run only, so a browser `EventSource` can open it without headers).

    Over the plan's runs per minute or concurrent runs: 429 (`runs.rate_limited`,
    `runs.concurrency_limited`) with `Retry-After`; the month's tokens used up: 402
    (`billing.quota_exceeded`). `RateLimit-Policy` and `RateLimit` describe the per-minute
    limit."""
    started = await runs.start(
        principal, body, agents=registry.names, default_agent=registry.default, jobs=uow.jobs
    )
    run = started.run
    if started.admitted is not None:
        response.headers.update(started.admitted.headers())
    return ChatAccepted(
        run_id=run.id,
        conversation_id=run.conversation_id,
        status="queued",
        stream_url=await _stream_url(authority, principal, run.id),
    )


@router.post("/chat/stream", responses=STREAM)
async def chat_stream(
    body: ChatRequest,
    principal: CurrentPrincipal,
    runs: Runs,
    registry: Registry,
    uow: UoW,
    resources: AppResources,
    hub: Hub,
    settings: AppSettings,
    slots: Streams,
) -> EventSourceResponse:
    """Queue a run and answer with its events as Server-Sent Events, from the first. Takes
    one of the user's open streams (429 `runs.too_many_streams` beyond the plan's), and is
    limited like `POST /chat`."""
    slot = await runs.open_stream(principal.tenant_id, principal.subject, slots)
    try:
        started = await runs.start(
            principal, body, agents=registry.names, default_agent=registry.default, jobs=uow.jobs
        )
    except BaseException:
        await _give_back(slots, slot)
        raise
    headers = started.admitted.headers() if started.admitted is not None else {}
    return _follow(started.run.id, 0, resources, hub, settings, slots, slot, headers)


@router.get("/runs/{run_id}", response_model=RunRead)
async def get_run(run_id: uuid.UUID, principal: CurrentPrincipal, runs: Runs) -> RunRead:
    """A run's status, agent, usage and error."""
    return await runs.get(principal, run_id)


@router.get("/runs/{run_id}/stream", responses=STREAM)
async def stream_run(
    run_id: uuid.UUID,
    owner: StreamAccess,
    runs: Runs,
    slots: Streams,
    resources: AppResources,
    hub: Hub,
    settings: AppSettings,
    last_event_id: Annotated[str | None, Header()] = None,
    last_event_id_query: Annotated[str | None, Query(alias="last_event_id")] = None,
) -> EventSourceResponse:
    """The run's events after `Last-Event-ID` (or `?last_event_id=`), then live ones, each
    once and in order; a finished run's stream ends with its terminal event. Takes one of
    the user's open streams until it ends: 429 `runs.too_many_streams` beyond the plan's."""
    after = _after(last_event_id if last_event_id is not None else last_event_id_query)
    tenant_id, user_id = owner
    slot = await runs.open_stream(tenant_id, user_id, slots)
    return _follow(run_id, after, resources, hub, settings, slots, slot)


async def _give_back(slots: StreamSlots, slot: StreamSlot | None) -> None:
    if slot is not None:
        # Redis away: the slot lapses by itself, unrenewed, within RUNS_STREAM_SLOT_SECONDS.
        with contextlib.suppress(Exception):
            await slots.give_back(slot)


def _after(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise InvalidLastEventIdError(
            "Last-Event-ID must be a sequence number (0 or more)."
        ) from None
    if value < 0:
        raise InvalidLastEventIdError("Last-Event-ID must be a sequence number (0 or more).")
    return value


def _follow(
    run_id: uuid.UUID,
    after: int,
    resources: AppResources,
    hub: EventHub,
    settings: AppSettings,
    slots: StreamSlots,
    slot: StreamSlot | None,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    async def terminal(seq: int) -> RunEvent | None:
        return await terminal_event(resources.sessionmaker, run_id, seq)

    batches = follow_batches(
        str(run_id),
        after=after,
        hub=hub,
        redis=resources.redis,
        terminal_from_database=terminal,
    )
    if slot is None:
        return event_stream(batches, settings.runs, headers=headers)
    held = slot

    def opened() -> None:
        slots.serving(held)

    async def closed() -> None:
        await _give_back(slots, held)

    return event_stream(batches, settings.runs, headers=headers, opened=opened, closed=closed)


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(
    run_id: uuid.UUID, principal: CurrentPrincipal, runs: Runs, resources: AppResources
) -> Response:
    """Stop a queued or running run; its stream ends with `run.cancelled`. 409 if it has
    already finished."""
    await runs.cancel(principal, run_id, resources.redis)
    return Response(status_code=202)
