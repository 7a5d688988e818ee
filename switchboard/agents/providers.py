"""Which model provider runs the agents: the real one with credentials, else the offline model."""

from __future__ import annotations

import httpx2
from agents import ModelProvider, ModelSettings, OpenAIProvider, RunConfig
from agents.models.openai_provider import shared_http_client
from agents.tracing import TracingConfig
from openai import AsyncOpenAI, Timeout

from switchboard.agents.measured import count_retries
from switchboard.agents.offline import OfflineModelProvider
from switchboard.agents.settings import OfflineSettings, OpenAISettings
from switchboard.agents.tracing import sdk_tracing_installed

WORKFLOW_NAME = "switchboard"


def create_model_provider(openai: OpenAISettings, offline: OfflineSettings) -> ModelProvider:
    if openai.api_key is None:
        return OfflineModelProvider(token_delay_ms=offline.model_token_delay_ms)
    # The client owns retries (the SDK's own model retries would set the client's to 0). Its
    # connections come from the SDK's pool, one per process, as the SDK's own clients' do.
    client = AsyncOpenAI(
        api_key=openai.api_key.get_secret_value(),
        base_url=None if openai.base_url is None else str(openai.base_url),
        max_retries=openai.max_retries,
        timeout=Timeout(openai.timeout_seconds, connect=openai.connect_timeout_seconds),
        http_client=_http_client(),
    )
    return OpenAIProvider(openai_client=client, use_responses=wire_api(openai) == "responses")


def _http_client() -> httpx2.AsyncClient:
    client = shared_http_client()
    hooks = client.event_hooks
    if count_retries not in hooks["request"]:
        hooks["request"].append(count_retries)
        client.event_hooks = hooks
    return client


def wire_api(openai: OpenAISettings) -> str:
    """``OPENAI_API``, else the Responses API on OpenAI's own endpoint and Chat Completions on
    any other: most OpenAI-compatible servers (vLLM, Ollama, LiteLLM, ...) speak only that."""
    if openai.api is not None:
        return openai.api
    return "responses" if openai.base_url is None else "chat_completions"


def tracing_disabled(openai: OpenAISettings) -> bool:
    """No export of the SDK's traces to OpenAI."""
    return not (openai.tracing and openai.api_key is not None)


def run_config(
    model_provider: ModelProvider, openai: OpenAISettings, *, group_id: str | None = None
) -> RunConfig:
    """Settings of one run; ``group_id`` (the conversation) links its traces together."""
    to_openai = not tracing_disabled(openai)
    tracing: TracingConfig | None = None
    if to_openai and openai.api_key is not None:
        # Per run, so the exporter never falls back to a process-wide OPENAI_API_KEY.
        tracing = {"api_key": openai.api_key.get_secret_value()}
    return RunConfig(
        model_provider=model_provider,
        # Off unless someone takes the spans: OpenAI's dashboard, or OpenTelemetry.
        tracing_disabled=not (to_openai or sdk_tracing_installed()),
        tracing=tracing,
        workflow_name=WORKFLOW_NAME,
        group_id=group_id,
        # Over every agent's own settings. Chat Completions servers other than OpenAI's stream
        # usage only when asked (stream_options.include_usage), and billing counts those tokens.
        model_settings=ModelSettings(include_usage=True),
    )
