"""The provider's models, measured: every call's outcome, the provider's status and latency.

Only the real provider is measured; the offline model makes no calls worth watching.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from agents import (
    Model,
    ModelProvider,
    ModelResponse,
    ModelRetryAdvice,
    ModelRetryAdviceRequest,
)
from agents.items import TResponseStreamEvent
from openai import APIConnectionError, APIStatusError, APITimeoutError

from switchboard.agents.metrics import (
    MODEL_CALL_SECONDS,
    MODEL_CALLS,
    MODEL_RETRIES,
    MODEL_TIME_TO_FIRST_TOKEN,
)

# The first event of output in either wire format (the SDK turns Chat Completions chunks into
# these too); the events before them only open the response and its items.
_OUTPUT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
    }
)


class MeasuredModelProvider(ModelProvider):
    def __init__(self, provider: ModelProvider) -> None:
        self._provider = provider

    def get_model(self, model_name: str | None) -> Model:
        model = self._provider.get_model(model_name)
        return MeasuredModel(model, getattr(model, "model", model_name or "default"))

    async def aclose(self) -> None:
        await self._provider.aclose()


class MeasuredModel(Model):
    def __init__(self, model: Model, name: str) -> None:
        self._model = model
        self.name = str(name)

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        started = time.perf_counter()
        try:
            response = await self._model.get_response(*args, **kwargs)
        except BaseException as exc:
            self._count_failure(exc, answered=False)
            raise
        MODEL_CALL_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        MODEL_CALLS.labels(self.name, "ok", "200").inc()
        return response

    async def stream_response(
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[TResponseStreamEvent]:
        started = time.perf_counter()
        answered, waiting = False, True
        try:
            async for event in self._model.stream_response(*args, **kwargs):
                answered = True
                if waiting and event.type in _OUTPUT_DELTAS:
                    waiting = False
                    MODEL_TIME_TO_FIRST_TOKEN.labels(self.name).observe(
                        time.perf_counter() - started
                    )
                yield event
        except BaseException as exc:
            self._count_failure(exc, answered=answered)
            raise
        MODEL_CALL_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        MODEL_CALLS.labels(self.name, "ok", "200").inc()

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        return self._model.get_retry_advice(request)

    async def close(self) -> None:
        await self._model.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self._model._cleanup_on_run_end(owner)

    def _count_failure(self, exc: BaseException, *, answered: bool) -> None:
        # A run stopped by a cancel or its time limit closes the stream: GeneratorExit or
        # CancelledError, neither an Exception.
        outcome = "error" if isinstance(exc, Exception) else "cancelled"
        MODEL_CALLS.labels(self.name, outcome, _status(exc, answered=answered)).inc()


def _status(exc: BaseException, *, answered: bool) -> str:
    if isinstance(exc, APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, APITimeoutError):
        return "timeout"
    if isinstance(exc, APIConnectionError):
        return "connection"
    return "200" if answered else "none"


async def count_retries(request: httpx2.Request) -> None:
    """An httpx event hook: the openai client numbers each attempt in this header."""
    if request.headers.get("x-stainless-retry-count", "0") != "0":
        MODEL_RETRIES.inc()
