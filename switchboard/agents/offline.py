"""The built-in offline model: deterministic, no network, streamed like an OpenAI Responses model.

Its reply repeats the words of the latest user message in order, one ``output_text.delta`` per
word (the word and the space after it, so the deltas concatenate to the reply exactly), with
``token_delay_ms`` of sleep before each word.

Before replying it may act, one action per model turn, first match wins:

=====================================  ===========================================================
the user message has a word starting   and the agent has                  the turn is
=====================================  ===========================================================
``billing`` or ``invoice``             a handoff to ``billing``           ``transfer_to_billing()``
``time``                               the ``current_time`` tool          ``current_time()``
``search``                             the ``search_conversations`` tool  ``search_conversations(
                                                                          query=<the message>)``
``usage``                              the ``usage_summary`` tool         ``usage_summary()``
=====================================  ===========================================================

Before those, the phrase ``cancel my subscription`` makes an agent with the
``cancel_subscription`` tool call it, and one with a handoff to ``billing`` hand off.

Matching ignores case and punctuation. Nothing is called twice for the same user message: the
calls already made are read from the input items that follow it. Once nothing is left to call,
the reply is the words of the message followed by the words of each tool's output, in call order.

Usage: input tokens are the words of every input item's text (messages, call arguments, tool
outputs); output tokens are the words of the reply, or of the call's JSON arguments.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents import FunctionTool, Handoff, Model, ModelProvider, ModelResponse, Tool, Usage
from agents.items import TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from pydantic import BaseModel

if TYPE_CHECKING:
    from agents import AgentOutputSchemaBase, ModelSettings, ModelTracing
    from openai.types.responses.response_prompt_param import ResponsePromptParam

MODEL_NAME = "offline"

# (target agent, trigger words): a handoff the triage agent takes when a trigger is mentioned.
HANDOFF_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (("billing", ("billing", "invoice")),)

# (tool name, trigger word), in the order the tools are tried.
TOOL_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("current_time", "time"),
    ("search_conversations", "search"),
    ("usage_summary", "usage"),
)
# (target agent or tool name, phrase): taken when the message holds the phrase, before the
# single words above. Triage hands the request to billing, which calls the tool.
PHRASE_HANDOFFS: tuple[tuple[str, str], ...] = (("billing", "cancel my subscription"),)
PHRASE_TOOLS: tuple[tuple[str, str], ...] = (("cancel_subscription", "cancel my subscription"),)
_KEYWORD_TOOLS = frozenset(name for name, _ in (*TOOL_KEYWORDS, *PHRASE_TOOLS))


@dataclass(frozen=True)
class _Call:
    name: str
    arguments: str


@dataclass(frozen=True)
class _Reply:
    words: list[str]


class OfflineModel(Model):
    def __init__(self, *, token_delay_ms: float = 0, name: str = MODEL_NAME) -> None:
        self.token_delay_ms = token_delay_ms
        self.name = name

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        response: Response | None = None
        async for event in self.stream_response(
            system_instructions,
            input,
            model_settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        ):
            if isinstance(event, ResponseCompletedEvent):
                response = event.response
        assert response is not None
        assert response.usage is not None
        return ModelResponse(
            output=response.output,
            usage=Usage(
                requests=1,
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                total_tokens=response.usage.total_tokens,
            ),
            response_id=response.id,
        )

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        items = _input_items(input)
        turn = _plan(items, tools, handoffs)
        stream = ResponsesStream(self.name, input_tokens=sum(_count_words(_text(i)) for i in items))
        yield stream.created()
        yield stream.in_progress()
        if isinstance(turn, _Call):
            for event in stream.call(turn.name, turn.arguments):
                yield event
        else:
            for event in stream.message_start():
                yield event
            for index, word in enumerate(turn.words):
                if self.token_delay_ms > 0:
                    await asyncio.sleep(self.token_delay_ms / 1000)
                last = index == len(turn.words) - 1
                yield stream.delta(word if last else f"{word} ")
            for event in stream.message_end():
                yield event
        yield stream.completed()


class OfflineModelProvider(ModelProvider):
    """Answers every model name with the offline model."""

    def __init__(self, *, token_delay_ms: float = 0) -> None:
        self.model = OfflineModel(token_delay_ms=token_delay_ms)

    def get_model(self, model_name: str | None) -> Model:
        return self.model


def _plan(
    items: Sequence[Mapping[str, Any]], tools: list[Tool], handoffs: list[Handoff]
) -> _Call | _Reply:
    user_index = _latest_user_index(items)
    message = _text(items[user_index]) if user_index is not None else ""
    since = items[user_index + 1 :] if user_index is not None else items
    calls = {
        str(item.get("call_id")): str(item.get("name"))
        for item in since
        if item.get("type") == "function_call"
    }
    called = set(calls.values())
    words = set(re.findall(r"[a-z0-9]+", message.lower()))

    phrase = " ".join(re.findall(r"[a-z0-9]+", message.lower()))

    def mentions(triggers: Iterable[str]) -> bool:
        return any(word.startswith(trigger) for word in words for trigger in triggers)

    def says(text: str) -> bool:
        return f" {text} " in f" {phrase} "

    tool_names = {tool.name for tool in tools if isinstance(tool, FunctionTool)}
    for name, text in PHRASE_TOOLS:
        if name in tool_names and name not in called and says(text):
            return _Call(name, "{}")
    for target, text in PHRASE_HANDOFFS:
        for option in handoffs:
            if option.agent_name == target and option.tool_name not in called and says(text):
                return _Call(option.tool_name, "{}")

    for target, triggers in HANDOFF_KEYWORDS:
        for option in handoffs:
            if (
                option.agent_name == target
                and option.tool_name not in called
                and mentions(triggers)
            ):
                return _Call(option.tool_name, "{}")

    for name, trigger in TOOL_KEYWORDS:
        if name in tool_names and name not in called and mentions((trigger,)):
            arguments = {"query": message} if name == "search_conversations" else {}
            return _Call(name, json.dumps(arguments))

    reply = message.split()
    for item in since:
        is_output = item.get("type") == "function_call_output"
        if is_output and calls.get(str(item.get("call_id"))) in _KEYWORD_TOOLS:
            reply.extend(_text(item).split())
    return _Reply(reply)


def response_usage(input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached_tokens, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
    )


class ResponsesStream:
    """Builds the Responses stream events of one model turn, numbering them in order: created
    and in progress, then a function call or a message (start, a delta each, end), then
    completed. The local OpenAI-compatible test server streams the same events over HTTP."""

    def __init__(self, model: str, *, input_tokens: int) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.output_tokens = 0
        self.response_id = f"resp_{uuid.uuid4().hex}"
        self.created_at = time.time()
        self.output: list[TResponseOutputItem] = []
        self.sequence = -1
        self.item_id = ""
        self.text = ""

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def _response(self, usage: ResponseUsage | None) -> Response:
        """In progress without ``usage``, completed with it."""
        return Response(
            id=self.response_id,
            created_at=self.created_at,
            model=self.model,
            object="response",
            output=list(self.output) if usage is not None else [],
            tool_choice="auto",
            tools=[],
            parallel_tool_calls=False,
            status="completed" if usage is not None else "in_progress",
            usage=usage,
        )

    def created(self) -> TResponseStreamEvent:
        return ResponseCreatedEvent(
            type="response.created",
            response=self._response(None),
            sequence_number=self._next(),
        )

    def in_progress(self) -> TResponseStreamEvent:
        return ResponseInProgressEvent(
            type="response.in_progress",
            response=self._response(None),
            sequence_number=self._next(),
        )

    def completed(self, usage: ResponseUsage | None = None) -> TResponseStreamEvent:
        """``usage``: the turn's own, else the words of its input and of its output."""
        if usage is None:
            usage = response_usage(self.input_tokens, self.output_tokens)
        return ResponseCompletedEvent(
            type="response.completed",
            response=self._response(usage),
            sequence_number=self._next(),
        )

    def call(self, name: str, arguments: str) -> list[TResponseStreamEvent]:
        call_id = f"call_{uuid.uuid4().hex}"
        item_id = f"fc_{uuid.uuid4().hex}"
        self.output_tokens = _count_words(arguments)

        def item(status: str, so_far: str) -> ResponseFunctionToolCall:
            return ResponseFunctionToolCall.model_validate(
                {
                    "type": "function_call",
                    "id": item_id,
                    "call_id": call_id,
                    "name": name,
                    "arguments": so_far,
                    "status": status,
                }
            )

        done = item("completed", arguments)
        self.output.append(done)
        return [
            ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                item=item("in_progress", ""),
                output_index=0,
                sequence_number=self._next(),
            ),
            ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta",
                item_id=item_id,
                output_index=0,
                delta=arguments,
                sequence_number=self._next(),
            ),
            ResponseFunctionCallArgumentsDoneEvent(
                type="response.function_call_arguments.done",
                item_id=item_id,
                output_index=0,
                arguments=arguments,
                sequence_number=self._next(),
            ),
            ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                item=done,
                output_index=0,
                sequence_number=self._next(),
            ),
        ]

    def message_start(self) -> list[TResponseStreamEvent]:
        self.item_id = f"msg_{uuid.uuid4().hex}"
        return [
            ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                item=self._message("in_progress", []),
                output_index=0,
                sequence_number=self._next(),
            ),
            ResponseContentPartAddedEvent(
                type="response.content_part.added",
                item_id=self.item_id,
                output_index=0,
                content_index=0,
                part=_output_text(""),
                sequence_number=self._next(),
            ),
        ]

    def delta(self, text: str) -> TResponseStreamEvent:
        self.text += text
        return ResponseTextDeltaEvent(
            type="response.output_text.delta",
            item_id=self.item_id,
            output_index=0,
            content_index=0,
            delta=text,
            logprobs=[],
            sequence_number=self._next(),
        )

    def message_end(self) -> list[TResponseStreamEvent]:
        self.output_tokens = _count_words(self.text)
        done = self._message("completed", [_output_text(self.text)])
        self.output.append(done)
        return [
            ResponseTextDoneEvent(
                type="response.output_text.done",
                item_id=self.item_id,
                output_index=0,
                content_index=0,
                text=self.text,
                logprobs=[],
                sequence_number=self._next(),
            ),
            ResponseContentPartDoneEvent(
                type="response.content_part.done",
                item_id=self.item_id,
                output_index=0,
                content_index=0,
                part=_output_text(self.text),
                sequence_number=self._next(),
            ),
            ResponseOutputItemDoneEvent(
                type="response.output_item.done",
                item=done,
                output_index=0,
                sequence_number=self._next(),
            ),
        ]

    def _message(self, status: str, content: list[ResponseOutputText]) -> ResponseOutputMessage:
        return ResponseOutputMessage.model_validate(
            {
                "type": "message",
                "id": self.item_id,
                "role": "assistant",
                "status": status,
                "content": content,
            }
        )


def _output_text(text: str) -> ResponseOutputText:
    return ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])


def _input_items(input: str | list[TResponseInputItem]) -> list[Mapping[str, Any]]:
    if isinstance(input, str):
        return [{"type": "message", "role": "user", "content": input}]
    items: list[Mapping[str, Any]] = []
    for item in input:
        if isinstance(item, BaseModel):
            items.append(item.model_dump(exclude_none=True))
        else:
            items.append(item)
    return items


def _latest_user_index(items: Sequence[Mapping[str, Any]]) -> int | None:
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        if item.get("role") == "user" and item.get("type", "message") == "message":
            return index
    return None


def _text(item: Mapping[str, Any]) -> str:
    """The text an input item carries: message content, call arguments or tool output."""
    kind = item.get("type", "message")
    if kind == "message":
        return _content_text(item.get("content"))
    if kind == "function_call":
        return str(item.get("arguments", ""))
    if kind == "function_call_output":
        return _content_text(item.get("output"))
    return ""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text") for part in content if isinstance(part, Mapping)]
        return " ".join(part for part in parts if isinstance(part, str))
    return ""


def _count_words(text: str) -> int:
    return len(text.split())
