"""Provider choice from settings; nothing here reaches the network."""

from __future__ import annotations

from agents import OpenAIChatCompletionsModel, OpenAIProvider, OpenAIResponsesModel
from pydantic import SecretStr

from switchboard.agents.offline import OfflineModel, OfflineModelProvider
from switchboard.agents.providers import create_model_provider, run_config, tracing_disabled
from switchboard.agents.settings import OfflineSettings, OpenAISettings

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
