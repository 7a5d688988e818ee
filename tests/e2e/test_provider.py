"""The real model path: a runs worker on the SDK's OpenAI models, talking over HTTP to the local
OpenAI-compatible server, in both wire formats, through the API and its SSE streams."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from httpx import AsyncClient

from tests.support.openai_server import OpenAIServer, Reply, ToolCall, Usage
from tests.support.sse import Frame, collect, frames
from tests.support.worker import runs_worker_process

TERMINAL = {"run.completed", "run.failed", "run.cancelled"}


@pytest.fixture(scope="module")
def model_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture(scope="module", params=["responses", "chat_completions"])
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def runs_worker(
    model_server: OpenAIServer, wire: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The runs worker of tests/e2e/conftest.py, on the provider at the local server."""
    with runs_worker_process(
        tmp_path_factory.mktemp("runs-worker"),
        metrics=True,
        env={
            "RUNS_CANCEL_POLL_SECONDS": "120",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": model_server.base_url,
            "OPENAI_API": wire,
        },
    ) as process:
        assert process.metrics_url is not None
        yield process.metrics_url


@pytest.fixture
def server(model_server: OpenAIServer) -> OpenAIServer:
    model_server.reset()
    return model_server


async def chat_stream(api: AsyncClient, headers: dict[str, str], message: str) -> list[Frame]:
    body = {"message": message}
    async with api.stream("POST", "/api/v1/chat/stream", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        received = await collect(response)
    assert [frame.event in TERMINAL for frame in received].count(True) == 1
    return received


def events(received: list[Frame], kind: str) -> list[Frame]:
    return [frame for frame in received if frame.event == kind]


async def test_a_streamed_reply_and_the_providers_usage_reach_the_run(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer, wire: str
) -> None:
    server.push(Reply("the provider streams this reply", usage=Usage(123, 7)))

    received = await chat_stream(api, alice, "hello provider")

    assert received[-1].event == "run.completed", received[-1]
    deltas = [frame.data["delta"] for frame in events(received, "message.delta")]
    [completed] = events(received, "message.completed")
    assert "".join(deltas) == completed.data["content"] == "the provider streams this reply"
    assert len(deltas) == 5
    usage = received[-1].data["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (123, 7)

    run = (await api.get(f"/api/v1/runs/{received[0].data['run_id']}", headers=alice)).json()
    assert run["usage"] == usage
    conversation = (
        await api.get(f"/api/v1/conversations/{run['conversation_id']}", headers=alice)
    ).json()
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("user", "hello provider"),
        ("assistant", "the provider streams this reply"),
    ]
    metered = (await api.get("/api/v1/billing/usage", headers=alice)).json()
    assert (metered["runs"], metered["input_tokens"], metered["output_tokens"]) == (1, 123, 7)

    [request] = server.requests
    assert request.wire == wire
    assert request.headers["authorization"] == "Bearer sk-test"
    if wire == "chat_completions":
        assert request.body["stream_options"] == {"include_usage": True}


async def test_a_tool_call_and_its_output_are_streamed_and_every_call_is_counted(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer
) -> None:
    server.push(ToolCall("current_time", usage=Usage(40, 3)), Reply("it is late", Usage(60, 3)))

    received = await chat_stream(api, alice, "what o'clock")

    [called] = events(received, "tool.called")
    [output] = events(received, "tool.output")
    assert called.data["tool"] == output.data["tool"] == "current_time"
    assert output.data["output"].startswith("20")
    assert events(received, "message.completed")[0].data["content"] == "it is late"
    usage = received[-1].data["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (100, 6)
    # The tool's output went back to the provider in the second request.
    assert output.data["output"] in str(server.requests[1].body)


async def test_a_handoff_to_the_billing_agent(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer
) -> None:
    server.push(ToolCall("transfer_to_billing"), Reply("billing speaking"))

    received = await chat_stream(api, alice, "a question about money")

    assert [frame.data["agent"] for frame in events(received, "agent.updated")] == ["billing"]
    [completed] = events(received, "message.completed")
    assert (completed.data["agent"], completed.data["content"]) == ("billing", "billing speaking")
    assert received[-1].event == "run.completed"


async def test_a_cancel_closes_the_provider_stream(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer
) -> None:
    server.push(Reply("one two three four", stall_after=2, stall_seconds=120))
    accepted = (await api.post("/api/v1/chat", json={"message": "go"}, headers=alice)).json()
    run_id = accepted["run_id"]

    seen: list[Frame] = []
    async with api.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=alice) as response:
        async for frame in frames(response):
            seen.append(frame)
            if frame.event == "message.delta" and len(events(seen, "message.delta")) == 2:
                cancelled = await api.post(f"/api/v1/runs/{run_id}/cancel", headers=alice)
                assert cancelled.status_code == 202

    assert seen[-1].event == "run.cancelled"
    disconnect = await asyncio.to_thread(server.wait_for_disconnect)
    assert (disconnect.request_index, disconnect.deltas_sent) == (0, 2)
