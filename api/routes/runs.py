"""Chat: start agent runs, read them, follow their events, cancel them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
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
from api.errors import problem_responses
from api.sse import event_stream
from switchboard.agents.errors import UnknownAgentError
from switchboard.auth.errors import InvalidTokenError, NoSigningKeyError
from switchboard.auth.principal import Principal
from switchboard.auth.tokens import IssuedToken, TokenType
from switchboard.billing.errors import QuotaExceededError
from switchboard.conversations.errors import ConversationFullError, ConversationNotFoundError
from switchboard.runs.errors import (
    ApprovalDecidedError,
    ConcurrencyLimitedError,
    ConversationBusyError,
    InvalidLastEventIdError,
    MessageTooLargeError,
    RunFinishedError,
    RunNotFoundError,
    RunNotWaitingError,
    RunsRateLimitedError,
    TicketStreamsExceededError,
    TooManyStreamsError,
    UnknownApprovalError,
)
from switchboard.runs.events import RunEvent
from switchboard.runs.hub import EventHub
from switchboard.runs.resume import parse_last_event_id
from switchboard.runs.schemas import (
    ApprovalDecisions,
    ChatAccepted,
    ChatRequest,
    RunRead,
    StreamTicketRead,
)
from switchboard.runs.service import terminal_event
from switchboard.runs.stream import follow_batches
from switchboard.runs.stream_slots import StreamSlot, StreamSlots

router = APIRouter(
    prefix="/api/v1", tags=["chat"], responses=problem_responses(InvalidTokenError, 503)
)

# The example of the OpenAPI document (/docs, /redoc): the start of the stream of
# docs/streaming.md, `{"message": "please check my invoice"}` answered by the offline model.
_RUN = '"run_id":"8749bc8c-b170-45ad-a1f9-8df3f03cdd25"'
STREAM_EXAMPLE = (
    "id: 1\nevent: run.queued\n"
    f'data: {{"conversation_id":"447cf61f-f664-41a0-9ea0-1d3d877f5c14",{_RUN},"seq":1}}\n\n'
    f'id: 2\nevent: run.started\ndata: {{"agent":"triage",{_RUN},"seq":2}}\n\n'
    f'id: 3\nevent: agent.updated\ndata: {{"agent":"billing",{_RUN},"seq":3}}\n\n'
    "id: 4\nevent: message.delta\n"
    f'data: {{"agent":"billing","delta":"please ",{_RUN},"seq":4}}\n\n'
)
STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"example": STREAM_EXAMPLE}},
        "description": "Server-Sent Events.",
    }
}
# What refuses a chat before its run is queued, POST /chat and POST /chat/stream alike.
CHAT_REFUSED = (
    QuotaExceededError,
    ConversationNotFoundError,
    ConversationFullError,
    ConversationBusyError,
    413,
    MessageTooLargeError,
    422,
    UnknownAgentError,
    RunsRateLimitedError,
    ConcurrencyLimitedError,
)
# An event number has at most 14 digits; this leaves room for leading zeros, not without end.
LAST_EVENT_ID_CHARS = 64


async def _ticket(authority: Authority, principal: Principal, run_id: uuid.UUID) -> IssuedToken:
    return await authority.issue(
        TokenType.stream_ticket,
        str(principal.subject),
        {"run": str(run_id), "tid": str(principal.tenant_id)},
    )


def _stream_url(run_id: uuid.UUID, ticket: IssuedToken) -> str:
    return f"/api/v1/runs/{run_id}/stream?ticket={ticket.token}"


@router.post(
    "/chat",
    status_code=202,
    response_model=ChatAccepted,
    responses=problem_responses(*CHAT_REFUSED, NoSigningKeyError, 503),
)
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

    A `conversation_id` that is not the caller's: 404 (`conversation.not_found`); a
    conversation holding `CONVERSATIONS_MAX_MESSAGES` already: 409 (`conversation.full`),
    with nothing stored. Into a conversation with a queued or running run,
    `multitask_strategy` decides: `enqueue` (the default) starts this run once those end,
    `interrupt` stops them keeping what they said, `rollback` stops and removes them, and
    `reject` answers 409 (`runs.conversation_busy`) with nothing stored. Over the plan's runs
    per minute or concurrent runs: 429 (`runs.rate_limited`, `runs.concurrency_limited`) with
    `Retry-After`; the month's tokens used up: 402 (`billing.quota_exceeded`).
    `RateLimit-Policy` and `RateLimit` describe the per-minute limit."""
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
        stream_url=_stream_url(run.id, await _ticket(authority, principal, run.id)),
    )


@router.post(
    "/chat/stream", responses={**STREAM, **problem_responses(*CHAT_REFUSED, TooManyStreamsError)}
)
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
    held = await runs.open_stream(principal.tenant_id, principal.subject, slots, jobs=uow.jobs)
    started = await runs.start(
        principal, body, agents=registry.names, default_agent=registry.default, jobs=uow.jobs
    )
    headers = started.admitted.headers() if started.admitted is not None else {}
    return _follow(started.run.id, 0, resources, hub, settings, slots, held, headers)


@router.get("/runs/{run_id}", response_model=RunRead, responses=problem_responses(RunNotFoundError))
async def get_run(run_id: uuid.UUID, principal: CurrentPrincipal, runs: Runs) -> RunRead:
    """A run's status, agent, usage and error."""
    return await runs.get(principal, run_id)


@router.get(
    "/runs/{run_id}/stream",
    responses={
        **STREAM,
        **problem_responses(
            RunNotFoundError,
            422,
            InvalidLastEventIdError,
            TooManyStreamsError,
            TicketStreamsExceededError,
        ),
    },
)
async def stream_run(
    run_id: uuid.UUID,
    owner: StreamAccess,
    runs: Runs,
    uow: UoW,
    slots: Streams,
    resources: AppResources,
    hub: Hub,
    settings: AppSettings,
    last_event_id: Annotated[str | None, Header(max_length=LAST_EVENT_ID_CHARS)] = None,
    last_event_id_query: Annotated[
        str | None, Query(alias="last_event_id", max_length=LAST_EVENT_ID_CHARS)
    ] = None,
) -> EventSourceResponse:
    """The run's events after `Last-Event-ID` (or `?last_event_id=`, a whole number from 0 to
    99999999999999, else 422 `run.invalid_last_event_id`; over 64 characters, 422
    `validation_error`), then live ones, each once and in order; a finished run's stream ends
    with its terminal event, or at once if the client already had it. Takes one of the user's
    open streams until it ends: 429 `runs.too_many_streams` beyond the plan's; opened with a
    ticket, also one of the ticket's: 429 `runs.ticket_streams_exceeded` beyond
    `RUNS_STREAMS_PER_TICKET`."""
    after = parse_last_event_id(last_event_id if last_event_id is not None else last_event_id_query)
    held = await runs.open_stream(
        owner.tenant_id, owner.user_id, slots, jobs=uow.jobs, ticket_id=owner.ticket_id
    )
    return _follow(run_id, after, resources, hub, settings, slots, held)


@router.post(
    "/runs/{run_id}/stream-ticket",
    response_model=StreamTicketRead,
    responses=problem_responses(RunNotFoundError, NoSigningKeyError, 503),
)
async def stream_ticket(
    run_id: uuid.UUID, principal: CurrentPrincipal, runs: Runs, authority: Authority
) -> StreamTicketRead:
    """A fresh ticket for the run's stream, for a client whose ticket expired before it
    (re)opened the stream: `stream_url` as `POST /chat` gives it, and `expires_at`, after
    which the ticket opens nothing (a stream it opened goes on). 404 `run.not_found` for a
    run that is not the caller's."""
    await runs.check_access(principal, run_id)
    ticket = await _ticket(authority, principal, run_id)
    return StreamTicketRead(
        stream_url=_stream_url(run_id, ticket),
        expires_at=datetime.fromtimestamp(ticket.expires_at, UTC),
    )


def _follow(
    run_id: uuid.UUID,
    after: int,
    resources: AppResources,
    hub: EventHub,
    settings: AppSettings,
    slots: StreamSlots,
    held: Sequence[StreamSlot],
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
    if not held:
        return event_stream(batches, settings.runs, headers=headers)

    def opened() -> None:
        for slot in held:
            slots.serving(slot)

    async def closed() -> None:
        await slots.give_back_all(held)

    return event_stream(batches, settings.runs, headers=headers, opened=opened, closed=closed)


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_class=Response,
    responses=problem_responses(RunNotFoundError, RunFinishedError),
)
async def cancel_run(
    run_id: uuid.UUID, principal: CurrentPrincipal, runs: Runs, resources: AppResources, uow: UoW
) -> Response:
    """Stop a queued, running or waiting (`requires_action`) run; its stream ends with
    `run.cancelled`. 409 if it has already finished."""
    await runs.cancel(principal, run_id, resources.redis, uow.jobs)
    return Response(status_code=202)


@router.post(
    "/runs/{run_id}/approvals",
    status_code=202,
    response_class=Response,
    responses=problem_responses(
        RunNotFoundError, RunNotWaitingError, ApprovalDecidedError, 413, 422, UnknownApprovalError
    ),
)
async def decide_approvals(
    run_id: uuid.UUID, body: ApprovalDecisions, principal: CurrentPrincipal, runs: Runs, uow: UoW
) -> Response:
    """Approve or reject the tool calls a `requires_action` run waits on (the ids of its
    `run.requires_action` event); a rejected call's `reason` is told to the agent. Once every
    pending call is decided the run resumes on any worker and its stream goes on. The run's
    own user only (404 otherwise); an id that is not one of the run's approvals: 422
    `run.unknown_approval`; one already decided: 409 `run.approval_decided`; a run not
    waiting: 409 `run.not_waiting`. Nothing is recorded when any decision is refused."""
    await runs.decide(principal, run_id, body, uow.jobs)
    return Response(status_code=202)
