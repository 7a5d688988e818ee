"""The real model path: a runs worker on the SDK's OpenAI models, talking over HTTP to the local
OpenAI-compatible server, in both wire formats, through the API and its SSE streams: replies,
tools, handoffs, usage, a cancel, and the provider's failures as the run's client and its
operator see them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from httpx import AsyncClient

from switchboard.runs.failures import (
    CONTEXT_LENGTH_EXCEEDED,
    MODEL_AUTH,
    MODEL_ERROR,
    MODEL_REFUSED,
    MODEL_UNAVAILABLE,
    RunFailure,
)
from tests.support.metrics import exposed, sample
from tests.support.openai_server import Failure, OpenAIServer, Reply, ToolCall, Usage
from tests.support.sse import Frame, collect, frames
from tests.support.waiting import eventually
from tests.support.worker import ApiProcess, WorkerProcess, runs_worker_process

TERMINAL = {"run.completed", "run.failed", "run.cancelled"}
# The worker's retry budget (OPENAI_MAX_RETRIES): small, so a provider that stays down fails fast.
MAX_RETRIES = 2
# The provider's own words in its error bodies: they can quote the request.
PROVIDER_DETAIL = "provider-detail-quoting-the-request-5e1b"
LIGHT_MODEL = "light-e2e"


@pytest.fixture(scope="module")
def model_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


@pytest.fixture(scope="module", params=["responses", "chat_completions"])
def wire(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", autouse=True)
def provider_worker(
    started_apis: tuple[ApiProcess, ApiProcess],
    model_server: OpenAIServer,
    wire: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A runs worker on the provider at the local server, for each wire format in turn;
    started after the API processes, so that they all start up at once."""
    with runs_worker_process(
        tmp_path_factory.mktemp("runs-worker"),
        metrics=True,
        env={
            "RUNS_CANCEL_POLL_SECONDS": "120",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": model_server.base_url,
            "OPENAI_API": wire,
            "OPENAI_MAX_RETRIES": str(MAX_RETRIES),
            "OPENAI_MODEL": LIGHT_MODEL,
        },
    ) as process:
        yield process


@pytest.fixture(scope="module")
def runs_worker(provider_worker: WorkerProcess) -> str:
    """The address of the worker's /metrics."""
    assert provider_worker.metrics_url is not None
    return provider_worker.metrics_url


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
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer, runs_worker: str
) -> None:
    server.push(
        ToolCall("current_time", usage=Usage(40, 3, cached_tokens=32)),
        Reply("it is late", Usage(60, 3, cached_tokens=48)),
    )
    before = httpx.get(runs_worker, timeout=5).text

    received = await chat_stream(api, alice, "what o'clock")

    [called] = events(received, "tool.called")
    [output] = events(received, "tool.output")
    assert called.data["tool"] == output.data["tool"] == "current_time"
    assert output.data["output"].startswith("20")
    assert events(received, "message.completed")[0].data["content"] == "it is late"
    usage = received[-1].data["usage"]
    assert usage == {"input_tokens": 100, "output_tokens": 6, "cached_input_tokens": 80}
    # The tool's output went back to the provider in the second request.
    assert output.data["output"] in str(server.requests[1].body)
    run = (await api.get(f"/api/v1/runs/{received[0].data['run_id']}", headers=alice)).json()
    assert run["usage"] == usage
    metered = (await api.get("/api/v1/billing/usage", headers=alice)).json()
    assert (metered["input_tokens"], metered["cached_input_tokens"]) == (100, 80)
    # Both calls are in the worker's model metrics, each once.
    after = httpx.get(runs_worker, timeout=5).text
    labels = {"model": LIGHT_MODEL, "outcome": "ok", "status": "200"}  # triage's tier
    assert (
        exposed(after, "model_calls_total", **labels)
        - (sample(before, "model_calls_total", **labels) or 0)
        == 2
    )


async def test_a_handoff_to_the_billing_agent(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer
) -> None:
    server.push(ToolCall("transfer_to_billing"), Reply("billing speaking"))

    received = await chat_stream(api, alice, "a question about money")

    assert [frame.data["agent"] for frame in events(received, "agent.updated")] == ["billing"]
    [completed] = events(received, "message.completed")
    assert (completed.data["agent"], completed.data["content"]) == ("billing", "billing speaking")
    assert received[-1].event == "run.completed"


async def cancelled_when(
    api: AsyncClient,
    headers: dict[str, str],
    moment: Callable[[list[Frame]], Awaitable[bool]],
) -> tuple[str, list[Frame]]:
    """A chat whose run is cancelled once ``moment`` says so of the frames seen; its id and
    every frame of its stream."""
    accepted = (await api.post("/api/v1/chat", json={"message": "go"}, headers=headers)).json()
    run_id = str(accepted["run_id"])
    seen: list[Frame] = []
    async with api.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=headers) as response:
        async for frame in frames(response):
            seen.append(frame)
            if await moment(seen):
                cancelled = await api.post(f"/api/v1/runs/{run_id}/cancel", headers=headers)
                assert cancelled.status_code == 202
    return run_id, seen


async def test_a_cancel_closes_the_provider_stream(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer
) -> None:
    server.push(Reply("one two three four", stall_after=2, stall_seconds=120))

    async def after_two_deltas(seen: list[Frame]) -> bool:
        return seen[-1].event == "message.delta" and len(events(seen, "message.delta")) == 2

    run_id, seen = await cancelled_when(api, alice, after_two_deltas)

    assert seen[-1].event == "run.cancelled"
    disconnect = await asyncio.to_thread(server.wait_for_disconnect)
    assert (disconnect.request_index, disconnect.deltas_sent) == (0, 2)
    # The two words sent are kept, cut short; the provider reported no usage for the call, so
    # its tokens are estimated (4 characters a token) and billed.
    assert seen[-2].event == "message.completed"
    assert (seen[-2].data["content"], seen[-2].data["incomplete"]) == ("one two ", True)
    run = (await api.get(f"/api/v1/runs/{run_id}", headers=alice)).json()
    assert run["usage"] == {"input_tokens": 1, "output_tokens": 2, "cached_input_tokens": 0}
    metered = (await api.get("/api/v1/billing/usage", headers=alice)).json()
    assert (metered["runs"], metered["input_tokens"], metered["output_tokens"]) == (1, 1, 2)


async def test_a_cancel_before_any_text_stores_and_bills_nothing(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer
) -> None:
    server.push(Reply("never sent", stall_before=120))

    async def requested() -> bool | None:
        return True if server.requests else None

    async def once_the_provider_stalls(seen: list[Frame]) -> bool:
        if seen[-1].event != "run.started":
            return False
        await eventually(requested)
        return True

    run_id, seen = await cancelled_when(api, alice, once_the_provider_stalls)
    accepted = (await api.get(f"/api/v1/runs/{run_id}", headers=alice)).json()

    assert [frame.event for frame in seen] == ["run.queued", "run.started", "run.cancelled"]
    await asyncio.to_thread(server.wait_for_disconnect)
    run = (await api.get(f"/api/v1/runs/{run_id}", headers=alice)).json()
    assert run["usage"] == {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0}
    conversation = (
        await api.get(f"/api/v1/conversations/{accepted['conversation_id']}", headers=alice)
    ).json()
    assert [m["role"] for m in conversation["messages"]] == ["user"]
    metered = (await api.get("/api/v1/billing/usage", headers=alice)).json()
    assert (metered["runs"], metered["input_tokens"], metered["output_tokens"]) == (0, 0, 0)


def _failure(status: int, code: str | None = None, kind: str = "invalid_request_error") -> Failure:
    return Failure(status, PROVIDER_DETAIL, kind, code)


# Each script: the provider's answers, one per request, and how the run fails.
PROVIDER_FAILURES: dict[str, tuple[list[Failure], RunFailure]] = {
    # 503 to the first call and to each of the client's retries.
    "stays-down": ([_failure(503, kind="server_error")] * (1 + MAX_RETRIES), MODEL_UNAVAILABLE),
    "bad-key": ([_failure(401, "invalid_api_key")], MODEL_AUTH),
    "context-length": ([_failure(400, "context_length_exceeded")], CONTEXT_LENGTH_EXCEEDED),
    "refused": ([_failure(400, "content_policy_violation")], MODEL_REFUSED),
    "other-400": ([_failure(400)], MODEL_ERROR),
}


@pytest.mark.parametrize("script", list(PROVIDER_FAILURES))
async def test_a_provider_failure_fails_the_run_with_its_code_and_a_fixed_message(
    api: AsyncClient,
    alice: dict[str, str],
    server: OpenAIServer,
    provider_worker: WorkerProcess,
    script: str,
) -> None:
    answers, expected = PROVIDER_FAILURES[script]
    server.push(*answers)

    received = await chat_stream(api, alice, "hello provider")

    error = {"code": expected.code, "message": expected.message}
    assert [frame.event for frame in received] == ["run.queued", "run.started", "run.failed"]
    assert received[-1].data["error"] == error
    # Every scripted answer was asked for, and nothing after them: one more request would have
    # got the server's default reply, and the run would have completed.
    assert len(server.requests) == len(answers)
    run_id = received[0].data["run_id"]
    run = (await api.get(f"/api/v1/runs/{run_id}", headers=alice)).json()
    assert (run["status"], run["error"]) == ("failed", error)
    conversation = (
        await api.get(f"/api/v1/conversations/{run['conversation_id']}", headers=alice)
    ).json()
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("user", "hello provider")
    ]
    # A client coming back to the run replays the same events, ending the same way.
    async with api.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=alice) as response:
        assert response.status_code == 200
        replayed = await collect(response)
    assert replayed == received

    told = json.dumps([run, conversation, [frame.data for frame in received]])
    assert PROVIDER_DETAIL not in told
    # The operator has the provider's words, in the worker's log line of the run's failure.
    [logged] = [
        line
        for line in provider_worker.log().splitlines()
        if run_id in line and '"event": "runs.failed"' in line
    ]
    assert PROVIDER_DETAIL in logged
    assert f'"code": "{expected.code}"' in logged


async def test_a_rate_limited_call_is_retried_and_the_run_goes_on(
    api: AsyncClient, alice: dict[str, str], server: OpenAIServer
) -> None:
    server.push(
        Failure(429, PROVIDER_DETAIL, "requests", "rate_limit_exceeded", retry_after=0),
        Reply("answered on the retry"),
    )

    received = await chat_stream(api, alice, "hello provider")

    assert received[-1].event == "run.completed", received[-1]
    deltas = [frame.data["delta"] for frame in events(received, "message.delta")]
    [completed] = events(received, "message.completed")
    assert "".join(deltas) == completed.data["content"] == "answered on the retry"
    assert [type(request.turn) for request in server.requests] == [Failure, Reply]
    run = (await api.get(f"/api/v1/runs/{received[0].data['run_id']}", headers=alice)).json()
    assert (run["status"], run["error"]) == ("succeeded", None)
    assert PROVIDER_DETAIL not in json.dumps([run, [frame.data for frame in received]])
