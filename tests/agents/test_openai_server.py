"""The local OpenAI-compatible server, read by the official ``openai`` client over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionToolCall,
    ResponseTextDeltaEvent,
)

from tests.support.openai_server import Failure, OpenAIServer, Reply, ToolCall, Usage

USER_MESSAGE = [{"role": "user", "content": "hello there friend"}]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


@pytest.fixture
async def client(server: OpenAIServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0) as sdk:
        yield sdk


async def test_responses_stream_the_default_reply_with_usage(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    stream = await client.responses.create(
        model="gpt-test", input=USER_MESSAGE, instructions="be brief", stream=True
    )
    events = [event async for event in stream]

    assert events[0].type == "response.created"
    deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert deltas == ["hello ", "there ", "friend"]
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.output_text == "hello there friend"
    assert completed.response.usage is not None
    # "be brief" and the message: five words in, three out.
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == (
        5,
        3,
    )
    [request] = server.requests
    assert request.wire == "responses"
    assert request.body["model"] == "gpt-test"
    assert request.headers["authorization"] == "Bearer sk-test"


async def test_responses_stream_a_scripted_tool_call(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.push(ToolCall("current_time", '{"zone": "UTC"}', usage=Usage(11, 4, cached_tokens=2)))

    stream = await client.responses.create(model="m", input=USER_MESSAGE, stream=True)
    events = [event async for event in stream]

    arguments = [e.delta for e in events if isinstance(e, ResponseFunctionCallArgumentsDeltaEvent)]
    assert "".join(arguments) == '{"zone": "UTC"}'
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    [call] = completed.response.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.name, call.arguments) == ("current_time", '{"zone": "UTC"}')
    usage = completed.response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (11, 4)
    assert usage.input_tokens_details.cached_tokens == 2


async def test_chat_completions_stream_text_and_usage_when_asked(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.push(Reply("a scripted answer", usage=Usage(20, 3)))

    stream = await client.chat.completions.create(
        model="m", messages=USER_MESSAGE, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a scripted answer"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (20, 3)
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


async def test_chat_completions_send_no_usage_unless_asked(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    chunks = [chunk async for chunk in stream]

    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "hello there friend"


async def test_chat_completions_stream_a_tool_call(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.push(ToolCall("transfer_to_billing"))

    stream = await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    chunks = [chunk async for chunk in stream]

    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].function is not None
    assert calls[0].function.name == "transfer_to_billing"
    assert calls[0].id is not None
    assert "".join(call.function.arguments or "" for call in calls if call.function) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("wire", ["responses", "chat_completions"])
async def test_an_error_status_carries_openais_error_body_and_retry_after(
    server: OpenAIServer, client: AsyncOpenAI, wire: str
) -> None:
    server.push(Failure(429, "Slow down.", "requests", "rate_limit_exceeded", retry_after=2))

    with pytest.raises(openai.RateLimitError) as raised:
        if wire == "responses":
            await client.responses.create(model="m", input=USER_MESSAGE, stream=True)
        else:
            await client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)

    assert raised.value.status_code == 429
    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.message.endswith("Slow down.")
    assert raised.value.response.headers["Retry-After"] == "2"
    # The next request takes the default again.
    stream = await client.responses.create(model="m", input=USER_MESSAGE, stream=True)
    assert [e.type async for e in stream][-1] == "response.completed"


async def test_a_scripted_disconnect_cuts_the_stream(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.push(Reply("one two three four", disconnect_after=2))
    received: list[str] = []

    with pytest.raises((httpx.RemoteProtocolError, openai.APIError)):
        stream = await client.responses.create(model="m", input=USER_MESSAGE, stream=True)
        async for event in stream:
            if isinstance(event, ResponseTextDeltaEvent):
                received.append(event.delta)

    assert received == ["one ", "two "]
    assert server.disconnects == []


async def test_a_client_hanging_up_mid_stall_is_recorded(
    server: OpenAIServer, client: AsyncOpenAI
) -> None:
    server.push(Reply("one two three", stall_after=1, stall_seconds=60))

    stream = await client.responses.create(model="m", input=USER_MESSAGE, stream=True)
    async for event in stream:
        if isinstance(event, ResponseTextDeltaEvent):
            break
    await stream.close()

    disconnect = server.wait_for_disconnect()
    assert (disconnect.path, disconnect.request_index, disconnect.deltas_sent) == (
        "/v1/responses",
        0,
        1,
    )


async def test_the_first_token_delay_holds_back_the_first_delta_of_default_replies() -> None:
    with OpenAIServer(first_token_delay=60) as server:
        async with AsyncOpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0) as sdk:
            stream = await sdk.chat.completions.create(
                model="m", messages=USER_MESSAGE, stream=True
            )
            async for chunk in stream:
                # The stream opens at once: the role, then the wait for the first word.
                assert chunk.choices[0].delta.role == "assistant"
                assert not chunk.choices[0].delta.content
                break
            await stream.close()

        disconnect = server.wait_for_disconnect()
    assert (disconnect.path, disconnect.deltas_sent) == ("/v1/chat/completions", 0)
    # The default reply, with the server's first-token delay.
    assert server.requests[0].turn == Reply("hello there friend", first_token_delay=60)
