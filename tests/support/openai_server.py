"""A local OpenAI-compatible model server, served over real HTTP on a free loopback port.

It speaks both wire formats the Agents SDK uses, streaming only:

* ``POST /v1/responses`` (``OpenAIResponsesModel``): SSE of ``response.created``,
  ``response.in_progress``, the output items with their ``output_text`` or
  ``function_call_arguments`` deltas, and ``response.completed`` carrying the usage.
* ``POST /v1/chat/completions`` (``OpenAIChatCompletionsModel``): ``chat.completion.chunk``
  deltas (content or ``tool_calls``), a last chunk with the usage when the request sets
  ``stream_options.include_usage``, then ``data: [DONE]``.

Every event and chunk is built from the ``openai`` package's own types and serialized with
``model_dump_json``, so the wire format is the one the client parses. The Responses events are
built by ``switchboard.agents.offline.ResponsesStream``, the builder the offline model streams
in-process, so both models' streams have one shape.

Each request takes the next scripted turn (``server.push(...)``) or, with none queued, the
default: a reply repeating the words of the latest user message, one delta per word (after the
server's ``first_token_delay``, with its ``token_delay`` before each). Input tokens
default to the words of every text in the request, output tokens to the words of the reply (or
of the call's arguments). A turn is one of ``Reply``, ``ToolCall`` or ``Failure``; a ``Reply``
can stall before its first byte or after some deltas, and can drop the connection mid-stream.

Requests are recorded (``server.requests``), and so are clients that hung up before the end of a
stream (``server.disconnects``). To run it by hand and point Switchboard at it::

    uv run --frozen python -m tests.support.openai_server --port 8100
    OPENAI_API_KEY=sk-test OPENAI_BASE_URL=http://127.0.0.1:8100/v1 ...
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import (
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)
from openai.types.completion_usage import CompletionUsage, PromptTokensDetails
from pydantic import BaseModel

from switchboard.agents.offline import ResponsesStream, response_usage
from tests.support.http_server import FakeHandler, FakeServer

Json = dict[str, Any]

# Keys whose string values are not text the model reads (roles, ids, types).
_NOT_TEXT = frozenset({"role", "type", "id", "call_id", "status", "name", "model"})


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    """A streamed text reply, one delta per word (the word and the space after it)."""

    text: str
    usage: Usage | None = None
    stall_before: float = 0
    """Seconds to wait before answering at all (status line included)."""
    stall_after: int | None = None
    """Deltas sent before a mid-stream stall of ``stall_seconds``."""
    stall_seconds: float = 0
    disconnect_after: int | None = None
    """Deltas sent before the server drops the connection, the stream unfinished."""
    token_delay: float = 0
    """Seconds before each delta."""
    first_token_delay: float = 0
    """Seconds before the first delta, once the stream has opened: a provider's time to first
    token."""


@dataclass(frozen=True)
class ToolCall:
    """A function call (a tool, or a handoff: ``transfer_to_<agent>``)."""

    name: str
    arguments: str = "{}"
    usage: Usage | None = None


@dataclass(frozen=True)
class Failure:
    """An HTTP error with OpenAI's error body, before any streaming."""

    status: int
    message: str = "The server had an error while processing your request."
    type: str = "server_error"
    code: str | None = None
    retry_after: float | None = None


Turn = Reply | ToolCall | Failure


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Names lowercased."""
    body: Json
    turn: Turn
    at: float

    @property
    def wire(self) -> str:
        return "chat_completions" if self.path.endswith("/chat/completions") else "responses"


@dataclass(frozen=True)
class Disconnect:
    path: str
    request_index: int
    deltas_sent: int
    at: float


@dataclass
class _State:
    queue: deque[Turn] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnects: list[Disconnect] = field(default_factory=list)


class OpenAIServer(FakeServer):
    thread_name = "openai-server"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_delay: float = 0,
        first_token_delay: float = 0,
    ) -> None:
        """``port=0`` picks a free port; ``token_delay`` pauses before each default delta, and
        ``first_token_delay`` once more before the first one."""
        super().__init__(_Handler, host=host, port=port)
        self.token_delay = token_delay
        self.first_token_delay = first_token_delay
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = _State()

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` (or ``AsyncOpenAI(base_url=...)``) takes."""
        return f"{self.origin}/v1"

    # ------------------------------------------------------------------ scripting

    def push(self, *turns: Turn) -> None:
        """Queues turns: each request takes the next one, the default once none is left."""
        with self._lock:
            self._state.queue.extend(turns)

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    @property
    def disconnects(self) -> list[Disconnect]:
        with self._lock:
            return list(self._state.disconnects)

    def wait_for_disconnect(self, timeout: float = 10) -> Disconnect:
        """The first disconnect, waiting for it up to ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._state.disconnects), timeout):
                raise AssertionError(f"no client disconnected within {timeout}s")
            return self._state.disconnects[0]

    # ------------------------------------------------------------------ internals

    def _take(
        self, method: str, path: str, headers: dict[str, str], body: Json
    ) -> tuple[int, Turn]:
        with self._lock:
            turn = self._state.queue.popleft() if self._state.queue else self._default(body)
            self._state.requests.append(
                RecordedRequest(method, path, headers, body, turn, time.time())
            )
            return len(self._state.requests) - 1, turn

    def _default(self, body: Json) -> Reply:
        return Reply(
            _latest_user_text(body),
            token_delay=self.token_delay,
            first_token_delay=self.first_token_delay,
        )

    def _disconnected(self, path: str, index: int, deltas: int) -> None:
        with self._changed:
            self._state.disconnects.append(Disconnect(path, index, deltas, time.time()))
            self._changed.notify_all()


# ---------------------------------------------------------------------- request text


def _texts(value: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(value, str):
        if key not in _NOT_TEXT:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, key)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _texts(item, name)


def _words(text: str) -> int:
    return len(text.split())


def input_tokens(body: Json) -> int:
    """The default input tokens of a request: the words of every text it carries."""
    parts = [body.get("instructions"), body.get("input"), body.get("messages")]
    return sum(_words(text) for text in _texts(parts))


def _latest_user_text(body: Json) -> str:
    items = body.get("input", body.get("messages", []))
    if isinstance(items, str):
        return items
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            return " ".join(_texts(item.get("content")))
    return ""


def _split(text: str) -> list[str]:
    words = text.split()
    return [word if i == len(words) - 1 else f"{word} " for i, word in enumerate(words)]


def _usage(turn: Reply | ToolCall, body: Json) -> Usage:
    if turn.usage is not None:
        return turn.usage
    produced = turn.text if isinstance(turn, Reply) else turn.arguments
    return Usage(input_tokens(body), _words(produced))


# ---------------------------------------------------------------------- Chat Completions


class _ChatStream:
    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def chunk(
        self, delta: ChoiceDelta | None, finish: str | None = None, usage: Usage | None = None
    ) -> ChatCompletionChunk:
        choices = (
            [] if delta is None else [Choice(index=0, delta=delta, finish_reason=finish)]  # type: ignore[arg-type]
        )
        return ChatCompletionChunk(
            id=self.id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model,
            choices=choices,
            usage=None
            if usage is None
            else CompletionUsage(
                prompt_tokens=usage.input_tokens,
                completion_tokens=usage.output_tokens,
                total_tokens=usage.input_tokens + usage.output_tokens,
                prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
            ),
        )

    def call(self, call: ToolCall) -> list[ChatCompletionChunk]:
        call_id = f"call_{uuid.uuid4().hex}"
        return [
            self.chunk(
                ChoiceDelta(
                    role="assistant",
                    tool_calls=[
                        ChoiceDeltaToolCall(
                            index=0,
                            id=call_id,
                            type="function",
                            function=ChoiceDeltaToolCallFunction(name=call.name, arguments=""),
                        )
                    ],
                )
            ),
            self.chunk(
                ChoiceDelta(
                    tool_calls=[
                        ChoiceDeltaToolCall(
                            index=0, function=ChoiceDeltaToolCallFunction(arguments=call.arguments)
                        )
                    ]
                )
            ),
            self.chunk(ChoiceDelta(), finish="tool_calls"),
        ]


# ---------------------------------------------------------------------- HTTP


class _Gone(Exception):
    """The client closed the connection."""


class _Drop(Exception):
    """The server drops the connection on purpose (a scripted disconnect, or stopping)."""


class _Handler(FakeHandler):
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> OpenAIServer:
        return cast(OpenAIServer, self.server.fake)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": []})
        else:
            self._json(404, _error_body("Not found.", "invalid_request_error", None))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, _error_body("Invalid JSON body.", "invalid_request_error", None))
            return
        path = self.path.split("?", 1)[0]
        if not path.endswith(("/responses", "/chat/completions")):
            self._json(404, _error_body("Not found.", "invalid_request_error", None))
            return
        fake = self.fake
        index, turn = fake._take(
            "POST", path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        self._deltas = 0
        try:
            if isinstance(turn, Failure):
                headers = {}
                if turn.retry_after is not None:
                    headers["Retry-After"] = f"{turn.retry_after:g}"
                self._json(turn.status, _error_body(turn.message, turn.type, turn.code), headers)
                return
            if isinstance(turn, Reply) and turn.stall_before:
                self._pause(turn.stall_before)
            self._start_stream()
            model = str(body.get("model") or "model")
            if path.endswith("/chat/completions"):
                self._chat(turn, body, model)
            else:
                self._responses(turn, body, model)
            self._write_chunk(b"")
        except _Gone:
            fake._disconnected(path, index, self._deltas)
            self.close_connection = True
        except _Drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ formats

    def _responses(self, turn: Reply | ToolCall, body: Json, model: str) -> None:
        usage = _usage(turn, body)
        stream = ResponsesStream(model, input_tokens=usage.input_tokens)
        self._event(stream.created())
        self._event(stream.in_progress())
        if isinstance(turn, ToolCall):
            for event in stream.call(turn.name, turn.arguments):
                self._event(event)
        else:
            for event in stream.message_start():
                self._event(event)
            for word in self._words(turn):
                self._event(stream.delta(word))
            for event in stream.message_end():
                self._event(event)
        self._event(
            stream.completed(
                response_usage(usage.input_tokens, usage.output_tokens, usage.cached_tokens)
            )
        )

    def _chat(self, turn: Reply | ToolCall, body: Json, model: str) -> None:
        stream = _ChatStream(model)
        if isinstance(turn, ToolCall):
            for chunk in stream.call(turn):
                self._data(chunk)
        else:
            self._data(stream.chunk(ChoiceDelta(role="assistant", content="")))
            for word in self._words(turn):
                self._data(stream.chunk(ChoiceDelta(content=word)))
            self._data(stream.chunk(ChoiceDelta(), finish="stop"))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            self._data(stream.chunk(None, usage=_usage(turn, body)))
        self._send(b"data: [DONE]\n\n")

    def _words(self, turn: Reply) -> Iterator[str]:
        for word in _split(turn.text):
            if turn.disconnect_after is not None and self._deltas >= turn.disconnect_after:
                raise _Drop()
            if turn.stall_after is not None and self._deltas == turn.stall_after:
                self._pause(turn.stall_seconds)
            if turn.first_token_delay and self._deltas == 0:
                self._pause(turn.first_token_delay)
            if turn.token_delay:
                self._pause(turn.token_delay)
            yield word
            self._deltas += 1
        if turn.disconnect_after is not None and self._deltas >= turn.disconnect_after:
            raise _Drop()

    # ------------------------------------------------------------------ wire

    def _json(self, status: int, body: Json, headers: dict[str, str] | None = None) -> None:
        self.send_json(status, json.dumps(body).encode(), headers)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def _event(self, event: BaseModel) -> None:
        kind = getattr(event, "type", "message")
        self._send(f"event: {kind}\ndata: {event.model_dump_json()}\n\n".encode())

    def _data(self, chunk: BaseModel) -> None:
        self._send(f"data: {chunk.model_dump_json(exclude_none=True)}\n\n".encode())

    def _send(self, payload: bytes) -> None:
        self._check()
        self._write_chunk(payload)

    def _write_chunk(self, payload: bytes) -> None:
        try:
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError) as error:
            raise _Gone from error

    def _check(self) -> None:
        """Raises ``_Gone`` when the client has closed its side."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if readable and self._closed_by_peer():
            raise _Gone

    def _pause(self, seconds: float) -> None:
        """Sleeps, but notices a client that hangs up meanwhile (and a stopping server)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.fake._stopping.is_set():
                raise _Drop()
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable and self._closed_by_peer():
                raise _Gone

    def _closed_by_peer(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (ConnectionResetError, OSError):
            return True


def _error_body(message: str, kind: str, code: str | None) -> Json:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A running server per test (list ``tests.support.openai_server`` in ``pytest_plugins``)."""
    with OpenAIServer() as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible model server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument(
        "--token-delay-ms", type=float, default=20, help="Pause before each streamed word."
    )
    parser.add_argument(
        "--first-token-delay-ms",
        type=float,
        default=0,
        help="Pause before the first streamed word of every reply, once the stream has opened.",
    )
    args = parser.parse_args()
    server = OpenAIServer(
        host=args.host,
        port=args.port,
        token_delay=args.token_delay_ms / 1000,
        first_token_delay=args.first_token_delay_ms / 1000,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.start()
    print(f"OpenAI-compatible server on {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(
            f"served {len(server.requests)} requests;"
            f" {len(server.disconnects)} clients hung up before the end",
            flush=True,
        )


if __name__ == "__main__":
    main()
