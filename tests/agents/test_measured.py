"""Every call to the model provider is counted by outcome and status, timed, and its retries
counted: the SDK's OpenAI models on the local OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from agents import Agent, Runner, RunResultStreaming, function_tool
from openai import APIStatusError, APITimeoutError
from prometheus_client import REGISTRY

from switchboard.agents.factory import create_agent_runtime
from switchboard.agents.measured import MeasuredModelProvider
from switchboard.agents.offline import OfflineModelProvider
from switchboard.agents.providers import create_model_provider, run_config
from switchboard.agents.settings import OfflineSettings, OpenAISettings
from tests.support.openai_server import Failure, OpenAIServer, Reply, ToolCall

OFFLINE = OfflineSettings()
MODEL = "gpt-measured"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def calls(outcome: str, status: str) -> float:
    return value("model_calls_total", model=MODEL, outcome=outcome, status=status)


def observed(histogram: str) -> float:
    return value(f"{histogram}_count", model=MODEL)


def settings_for(server: OpenAIServer, **values: object) -> OpenAISettings:
    return OpenAISettings.model_validate(
        {"api_key": "sk-test", "base_url": server.base_url, **values}
    )


@function_tool
def current_time() -> str:
    """The time of day."""
    return "noon"


async def run(settings: OpenAISettings, message: str = "hello") -> RunResultStreaming:
    provider = MeasuredModelProvider(create_model_provider(settings, OFFLINE))
    agent = Agent(name="triage", instructions="Answer.", model=MODEL, tools=[current_time])
    result = Runner.run_streamed(agent, message, run_config=run_config(provider, settings))
    async for _ in result.stream_events():
        pass
    return result


def change(measure: Callable[[], float]) -> Callable[[], float]:
    before = measure()
    return lambda: measure() - before


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
async def test_each_successful_call_is_counted_and_timed(
    openai_server: OpenAIServer, api: str
) -> None:
    ok = change(lambda: calls("ok", "200"))
    first_token = change(lambda: observed("model_time_to_first_token_seconds"))
    whole = change(lambda: observed("model_call_seconds"))
    waited = change(lambda: value("model_time_to_first_token_seconds_sum", model=MODEL))
    took = change(lambda: value("model_call_seconds_sum", model=MODEL))
    openai_server.push(ToolCall("current_time"), Reply("it is noon", stall_before=2.1))

    result = await run(settings_for(openai_server, api=api))

    assert result.final_output == "it is noon"
    # Two calls, one run: the tool call, then the reply that read its output.
    assert ok() == 2
    assert first_token() == 2
    assert whole() == 2
    # The reply's first token came after its 2.1 s wait, and no call's first token after the
    # end of its call.
    assert 2.1 <= waited() <= took()


async def test_a_retried_call_counts_its_retries_and_one_call(openai_server: OpenAIServer) -> None:
    retries = change(lambda: value("model_retries_total"))
    ok = change(lambda: calls("ok", "200"))
    limited = change(lambda: calls("error", "429"))
    openai_server.push(
        Failure(429, "slow down", "rate_limit_exceeded", retry_after=0),
        Failure(503, "down", retry_after=0),
        Reply("ok"),
    )

    result = await run(settings_for(openai_server, max_retries=3))

    assert result.final_output == "ok"
    assert (retries(), ok(), limited()) == (2, 1, 0)


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (Failure(401, "bad key", "invalid_request_error", "invalid_api_key"), "401"),
        (Failure(503, "down", retry_after=0), "503"),
    ],
)
async def test_a_failed_call_is_counted_with_the_providers_status(
    openai_server: OpenAIServer, failure: Failure, status: str
) -> None:
    failed = change(lambda: calls("error", status))
    whole = change(lambda: observed("model_call_seconds"))
    openai_server.push(failure)

    with pytest.raises(APIStatusError):
        await run(settings_for(openai_server, max_retries=0))

    assert (failed(), whole()) == (1, 0)


async def test_a_stalled_stream_is_counted_as_timed_out(openai_server: OpenAIServer) -> None:
    timed_out = change(lambda: calls("error", "timeout"))
    openai_server.push(Reply("one two", stall_after=1, stall_seconds=120))

    with pytest.raises(APITimeoutError):
        await run(settings_for(openai_server, max_retries=0, timeout_seconds=0.3))

    assert timed_out() == 1


async def test_a_cancelled_run_counts_its_call_as_cancelled(openai_server: OpenAIServer) -> None:
    cancelled = change(lambda: calls("cancelled", "200"))
    ok = change(lambda: calls("ok", "200"))
    openai_server.push(Reply("one two three", stall_after=1, stall_seconds=120))
    settings = settings_for(openai_server)
    provider = MeasuredModelProvider(create_model_provider(settings, OFFLINE))
    agent = Agent(name="triage", instructions="Answer.", model=MODEL)

    result = Runner.run_streamed(agent, "hello", run_config=run_config(provider, settings))
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            result.cancel()

    await asyncio.to_thread(openai_server.wait_for_disconnect)
    assert (cancelled(), ok()) == (1, 0)


def test_only_the_real_provider_is_measured() -> None:
    offline = create_agent_runtime(OpenAISettings(), OFFLINE)
    real = create_agent_runtime(OpenAISettings.model_validate({"api_key": "sk-test"}), OFFLINE)

    assert isinstance(offline.provider, OfflineModelProvider)
    assert isinstance(real.provider, MeasuredModelProvider)
    assert real.run_config().model_provider is real.provider
