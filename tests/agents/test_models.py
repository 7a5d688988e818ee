"""Model choice per agent: a tier in each definition, the models in settings."""

from __future__ import annotations

import pytest
from agents import Model, Runner
from pydantic import ValidationError

from switchboard.agents.context import AgentContext
from switchboard.agents.definitions import DEFINITIONS, ModelTier
from switchboard.agents.factory import create_agent_runtime
from switchboard.agents.offline import OfflineModelProvider
from switchboard.agents.providers import run_config
from switchboard.agents.settings import OfflineSettings, OpenAISettings
from switchboard.settings import SettingsError, load_settings


class RecordingProvider(OfflineModelProvider):
    """The offline model, noting every model name a run asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str | None] = []

    def get_model(self, model_name: str | None) -> Model:
        self.asked.append(model_name)
        return super().get_model(model_name)


def openai(**values: object) -> OpenAISettings:
    return OpenAISettings.model_validate(values)


def test_triage_is_light_and_the_specialists_strong() -> None:
    assert {d.name: d.model_tier for d in DEFINITIONS} == {
        "triage": ModelTier.light,
        "billing": ModelTier.strong,
        "support": ModelTier.strong,
    }


def test_the_shipped_defaults_are_a_cheaper_model_for_triage() -> None:
    registry = create_agent_runtime(OpenAISettings(), OfflineSettings()).registry

    assert {name: registry.agent(name).model for name in registry.names} == {
        "triage": "gpt-4.1-mini",
        "billing": "gpt-4.1",
        "support": "gpt-4.1",
    }


def test_an_agent_override_beats_its_tier() -> None:
    settings = openai(
        model="small", strong_model="large", agent_models={"support": "medium", "triage": "tiny"}
    )
    registry = create_agent_runtime(settings, OfflineSettings()).registry

    assert {info.name: info.model for info in registry.describe()} == {
        "triage": "tiny",
        "billing": "large",
        "support": "medium",
    }


def test_the_provider_shown_is_the_one_that_runs_the_agents() -> None:
    offline = create_agent_runtime(OpenAISettings(), OfflineSettings())
    real = create_agent_runtime(openai(api_key="sk-test"), OfflineSettings())
    compatible = create_agent_runtime(
        openai(api_key="sk-test", base_url="http://127.0.0.1:9/v1"), OfflineSettings()
    )

    assert {info.provider for info in offline.registry.describe()} == {"offline"}
    assert {info.provider for info in real.registry.describe()} == {"openai"}
    assert {info.provider for info in compatible.registry.describe()} == {"openai"}
    assert [info.model for info in real.registry.describe()] == [
        info.model for info in offline.registry.describe()
    ]


@pytest.mark.parametrize(
    ("agent_models", "message"),
    [
        ({"sales": "gpt-4.1"}, "no agent named sales; the agents are billing, support, triage"),
        ({"Billing": "gpt-4.1"}, "no agent named Billing"),
        ({"billing": " "}, "a model name is empty"),
    ],
)
def test_a_bad_agent_model_is_a_settings_error(agent_models: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        openai(agent_models=agent_models)


def test_an_unknown_agent_in_the_environment_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_AGENT_MODELS", '{"support": "gpt-4.1-mini", "sales": "gpt-4.1"}')

    with pytest.raises(SettingsError, match=r"OPENAI_AGENT_MODELS: .*no agent named sales"):
        load_settings()


def test_agent_models_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_STRONG_MODEL", "o4-mini")
    monkeypatch.setenv("OPENAI_AGENT_MODELS", '{"support": "gpt-4.1-mini"}')

    settings = load_settings()

    assert settings.openai.strong_model == "o4-mini"
    assert settings.openai.agent_models == {"support": "gpt-4.1-mini"}


async def test_a_run_asks_the_provider_for_each_agents_model(context: AgentContext) -> None:
    """A handoff switches models: triage asks for its model, billing then for its own."""
    settings = openai(agent_models={"billing": "billing-model"})
    registry = create_agent_runtime(settings, OfflineSettings()).registry
    provider = RecordingProvider()

    result = Runner.run_streamed(
        registry.agent("triage"),
        "where is my invoice",
        context=context,
        run_config=run_config(provider, settings),
    )
    async for _ in result.stream_events():
        pass

    assert result.last_agent.name == "billing"
    assert provider.asked == ["gpt-4.1-mini", "billing-model"]
