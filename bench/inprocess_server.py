"""The streaming benchmark's baseline: one FastAPI process that runs the agent inside the request.

``POST /api/v1/chat/stream`` (JSON ``{"message": ..., "agent": ...}``; any ``Authorization``
header is accepted and ignored) runs Switchboard's agent runtime, built once at start-up with
``create_agent_runtime`` from the process's settings (the offline model unless
``OPENAI_API_KEY`` is set), in the request's own task: ``Runner.run_streamed`` with an
``AgentContext`` whose backend answers no tool. Each SDK event goes to the client as soon as it
comes, as one SSE frame written through sse-starlette's ``EventSourceResponse``, in the wire
shape of Switchboard's streams (docs/streaming.md): ``id: N``, the event type, a JSON ``data``
holding ``run_id`` and ``seq``. A run sends the events a Switchboard run of the same message
sends: ``run.queued`` and ``run.started`` together when the request arrives, a
``message.delta`` per text delta, ``message.completed`` per reply, ``run.completed`` with the
usage. No database, no Redis, no queue, no logging: the architecture Switchboard grew from.

    uv run --frozen python -m bench.inprocess_server --port 8100

Runs on uvicorn with uvloop and httptools, one process, as ``python -m api`` does.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import uvicorn
from agents import ItemHelpers, Runner, TResponseInputItem
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from switchboard.agents.context import AgentContext, ConversationHit, UsageSummary
from switchboard.agents.factory import AgentRuntime, create_agent_runtime
from switchboard.settings import load_settings

CHAT_STREAM = "/api/v1/chat/stream"
# Those of the API's streams (api/sse.py): no proxy may cache or buffer them.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class NoBackend:
    """The bench's messages call no tool; a tool call would be a bench bug."""

    async def search_conversations(
        self, *, tenant_id: str, user_id: str, query: str, limit: int
    ) -> list[ConversationHit]:
        raise AssertionError("search_conversations called")

    async def usage_summary(self, *, tenant_id: str) -> UsageSummary:
        raise AssertionError("usage_summary called")

    async def cancel_subscription(self, *, tenant_id: str, user_id: str) -> str:
        raise AssertionError("cancel_subscription called")


def agent_context() -> AgentContext:
    """A run's context as the worker builds it, for a user and conversation of no database."""
    return AgentContext(
        tenant_id=str(uuid.uuid4()),
        user_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        backend=NoBackend(),
    )


def run_input(message: str) -> list[TResponseInputItem]:
    """A new conversation's history, as the worker gives it to the SDK: the user's message."""
    return cast(list[TResponseInputItem], [{"role": "user", "content": message}])


class ChatIn(BaseModel):
    message: str = Field(min_length=1)
    agent: str | None = None


class Frames:
    """One run's SSE frames, numbered 1, 2, 3, ... as Switchboard numbers a run's events."""

    def __init__(self) -> None:
        self.run_id = str(uuid.uuid4())
        self.seq = 0

    def __call__(self, kind: str, **data: Any) -> bytes:
        self.seq += 1
        payload = json.dumps(
            {**data, "run_id": self.run_id, "seq": self.seq}, separators=(",", ":")
        )
        return ServerSentEvent(id=str(self.seq), event=kind, data=payload).encode()


async def run_frames(runtime: AgentRuntime, message: str, entry: str) -> AsyncIterator[bytes]:
    frame = Frames()
    agent = runtime.registry.agent(entry)
    speaking = agent.name
    yield frame("run.queued", conversation_id=str(uuid.uuid4())) + frame(
        "run.started", agent=speaking
    )
    result = Runner.run_streamed(
        agent, run_input(message), context=agent_context(), run_config=runtime.run_config()
    )
    try:
        async for event in result.stream_events():
            if event.type == "raw_response_event":
                if event.data.type == "response.output_text.delta":
                    yield frame("message.delta", delta=event.data.delta, agent=speaking)
            elif event.type == "agent_updated_stream_event":
                if event.new_agent.name != speaking:
                    speaking = event.new_agent.name
                    yield frame("agent.updated", agent=speaking)
            elif event.name == "message_output_created":
                text = ItemHelpers.text_message_output(event.item)  # type: ignore[arg-type]
                if text:
                    yield frame(
                        "message.completed",
                        message_id=str(uuid.uuid4()),
                        content=text,
                        agent=speaking,
                        incomplete=False,
                    )
    finally:
        result.cancel()  # a no-op once the run is done; stops it if the client went away
    usage = result.context_wrapper.usage
    yield frame(
        "run.completed",
        usage={
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.input_tokens_details.cached_tokens,
        },
    )


def create_app() -> FastAPI:
    settings = load_settings()
    runtime = create_agent_runtime(settings.openai, settings.offline)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(CHAT_STREAM)
    async def chat_stream(chat: ChatIn) -> EventSourceResponse:
        entry = chat.agent or runtime.registry.default
        return EventSourceResponse(
            run_frames(runtime, chat.message, entry),
            headers=HEADERS,
            ping=max(1, int(settings.runs.ping_seconds)),
            ping_message_factory=lambda: ServerSentEvent(comment="ping"),
            send_timeout=settings.runs.send_timeout_seconds,
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    settings = load_settings()
    uvicorn.run(
        "bench.inprocess_server:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=settings.api.keep_alive_seconds,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
