"""The agents of a process, built once from settings."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

from agents import ModelProvider, RunConfig

from switchboard.agents.definitions import DEFINITIONS
from switchboard.agents.measured import MeasuredModelProvider
from switchboard.agents.offline import OfflineModelProvider
from switchboard.agents.providers import create_model_provider, run_config
from switchboard.agents.registry import AgentRegistry
from switchboard.agents.settings import OfflineSettings, OpenAISettings
from switchboard.agents.tools import TOOL_SPECS, ToolRegistry


@dataclass(frozen=True)
class AgentRuntime:
    registry: AgentRegistry
    provider: ModelProvider
    openai: OpenAISettings

    def run_config(self, group_id: str | None = None) -> RunConfig:
        # Building a RunConfig resolves its type hints (about half a millisecond of CPU): each
        # run gets a copy of the one built at first use, which differs only in its group.
        config = copy.copy(self._base_config)
        config.group_id = group_id
        return config

    @cached_property
    def _base_config(self) -> RunConfig:
        return run_config(self.provider, self.openai)


def create_agent_runtime(openai: OpenAISettings, offline: OfflineSettings) -> AgentRuntime:
    provider = create_model_provider(openai, offline)
    offline_model = isinstance(provider, OfflineModelProvider)
    registry = AgentRegistry(
        DEFINITIONS,
        ToolRegistry(TOOL_SPECS),
        openai.model_for,
        provider="offline" if offline_model else "openai",
    )
    return AgentRuntime(
        registry, provider if offline_model else MeasuredModelProvider(provider), openai
    )
