"""Provider choice from settings, and the SDK's OpenAI models on the local OpenAI-compatible
server over real HTTP."""

from __future__ import annotations

import asyncio

import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIProvider,
    OpenAIResponsesModel,
    Runner,
    function_tool,
)
from openai import APITimeoutError, Timeout
from pydantic import SecretStr

from switchboard.agents.offline import OfflineModel, OfflineModelProvider
from switchboard.agents.providers import (
    create_model_provider,
    run_config,
    tracing_disabled,
    wire_api,
)
from switchboard.agents.settings import OfflineSettings, OpenAISettings
from switchboard.runs.failures import MODEL_UNAVAILABLE, failure_of
from tests.support.openai_server import Failure, OpenAIServer, Reply, ToolCall, Usage

OFFLINE = OfflineSettings(model_token_delay_ms=7)


def openai(**values: object) -> OpenAISettings:
    return OpenAISettings.model_validate(values)


def test_no_key_runs_offline() -> None:
    provider = create_model_provider(openai(), OFFLINE)

    assert isinstance(provider, OfflineModelProvider)
    model = provider.get_model("gpt-4.1-mini")
    assert isinstance(model, OfflineModel)
    assert model.token_delay_ms == 7
    assert isinstance(provider.get_model(None), OfflineModel)


def test_an_empty_key_is_no_key() -> None:
    assert isinstance(create_model_provider(openai(api_key=""), OFFLINE), OfflineModelProvider)


def test_a_key_uses_the_openai_responses_api() -> None:
    provider = create_model_provider(openai(api_key="sk-test"), OFFLINE)

    assert isinstance(provider, OpenAIProvider)
    assert isinstance(provider.get_model("gpt-4.1-mini"), OpenAIResponsesModel)


def test_a_compatible_server_gets_chat_completions_at_its_url() -> None:
    settings = openai(api_key="sk-test", base_url="http://llm.internal:8000/v1")
    provider = create_model_provider(settings, OFFLINE)

    assert isinstance(provider, OpenAIProvider)
    model = provider.get_model("llama")
    assert isinstance(model, OpenAIChatCompletionsModel)
    assert str(model._client.base_url).startswith("http://llm.internal:8000/v1")
    assert model._client.api_key == "sk-test"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"api_key": "sk-test", "api": "chat_completions"}, OpenAIChatCompletionsModel),
        (
            {"api_key": "sk-test", "base_url": "http://llm.internal/v1", "api": "responses"},
            OpenAIResponsesModel,
        ),
        ({"api_key": "sk-test", "base_url": "http://llm.internal/v1", "api": ""}, None),
    ],
)
def test_openai_api_chooses_the_wire_format(values: dict[str, str], expected: type | None) -> None:
    settings = openai(**values)
    model = create_model_provider(settings, OFFLINE).get_model("m")

    assert isinstance(model, expected or OpenAIChatCompletionsModel)
    assert wire_api(settings) == ("chat_completions" if expected is None else values["api"])


def test_every_run_asks_for_usage() -> None:
    config = run_config(OfflineModelProvider(), openai())

    assert config.model_settings is not None
    assert config.model_settings.include_usage is True


@function_tool
def current_time() -> str:
    """The current time."""
    return "noon"


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
async def test_a_streamed_run_carries_the_providers_text_and_usage(
    openai_server: OpenAIServer, api: str
) -> None:
    settings = openai(api_key="sk-test", base_url=openai_server.base_url, api=api)
    openai_server.push(
        ToolCall("current_time", usage=Usage(30, 2)), Reply("it is noon", Usage(45, 3))
    )
    agent = Agent(name="triage", instructions="Answer.", model="gpt-test", tools=[current_time])

    config = run_config(create_model_provider(settings, OFFLINE), settings)
    result = Runner.run_streamed(agent, "what time", run_config=config)
    deltas = [
        event.data.delta
        async for event in result.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]

    assert "".join(deltas) == result.final_output == "it is noon"
    usage = result.context_wrapper.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 75, 5)
    first, second = openai_server.requests
    assert {first.wire, second.wire} == {api}
    assert first.body["stream"] is True
    if api == "chat_completions":
        # Without it a server other than OpenAI's sends no usage, and the run would count 0.
        assert first.body["stream_options"] == {"include_usage": True}
        assert second.body["messages"][-1]["role"] == "tool"
        assert second.body["messages"][-1]["content"] == "noon"
    else:
        assert second.body["input"][-1]["type"] == "function_call_output"
        assert second.body["input"][-1]["output"] == "noon"


def test_tracing_needs_both_the_flag_and_a_key() -> None:
    assert tracing_disabled(openai())
    assert tracing_disabled(openai(tracing=True))
    assert tracing_disabled(openai(api_key="sk-test"))
    assert not tracing_disabled(openai(api_key="sk-test", tracing=True))


def test_run_config_names_the_workflow_and_keeps_keys_out_unless_tracing() -> None:
    provider = OfflineModelProvider()
    quiet = run_config(provider, openai(api_key=SecretStr("sk-test")), group_id="conv-1")

    assert quiet.model_provider is provider
    assert quiet.workflow_name == "switchboard"
    assert quiet.group_id == "conv-1"
    assert quiet.tracing_disabled
    assert quiet.tracing is None

    traced = run_config(provider, openai(api_key="sk-test", tracing=True))
    assert not traced.tracing_disabled
    assert traced.tracing == {"api_key": "sk-test"}


def test_the_client_takes_the_retry_budget_and_timeouts() -> None:
    settings = openai(
        api_key="sk-test", max_retries=5, timeout_seconds=12, connect_timeout_seconds=2
    )
    model = create_model_provider(settings, OFFLINE).get_model("gpt-test")

    assert isinstance(model, OpenAIResponsesModel)
    assert model._client.max_retries == 5
    assert model._client.timeout == Timeout(12, connect=2)


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
async def test_a_rate_limited_call_is_retried_and_the_run_goes_on(
    openai_server: OpenAIServer, api: str
) -> None:
    settings = openai(api_key="sk-test", base_url=openai_server.base_url, api=api, max_retries=2)
    openai_server.push(
        Failure(429, "slow down", "rate_limit_exceeded", retry_after=0.05), Reply("ok")
    )
    agent = Agent(name="triage", instructions="Answer.", model="gpt-test")

    config = run_config(create_model_provider(settings, OFFLINE), settings)
    result = Runner.run_streamed(agent, "hello", run_config=config)
    async for _ in result.stream_events():
        pass

    assert result.final_output == "ok"
    assert len(openai_server.requests) == 2


async def test_a_stream_that_stalls_past_the_timeout_fails_the_call_as_unavailable(
    openai_server: OpenAIServer,
) -> None:
    settings = openai(
        api_key="sk-test", base_url=openai_server.base_url, max_retries=0, timeout_seconds=0.3
    )
    # Longer than the test may take: only the read timeout can end the call.
    openai_server.push(Reply("one two three", stall_after=1, stall_seconds=120))
    agent = Agent(name="triage", instructions="Answer.", model="gpt-test")

    config = run_config(create_model_provider(settings, OFFLINE), settings)
    with pytest.raises(APITimeoutError) as raised:
        result = Runner.run_streamed(agent, "hello", run_config=config)
        async for _ in result.stream_events():
            pass

    assert failure_of(raised.value) == MODEL_UNAVAILABLE
    # The client hung up mid-stall, after the one delta sent before it, and did not retry.
    gone = await asyncio.to_thread(openai_server.wait_for_disconnect)
    assert (gone.request_index, gone.deltas_sent) == (0, 1)
    assert len(openai_server.requests) == 1
