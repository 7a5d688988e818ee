"""What a failed run tells its client: a fixed code and message per kind of failure.

The exception's own text stays in the worker's log. A provider's error can quote the request
(the conversation, the model's settings) or the provider's internals, and ours can quote SQL or
file paths; neither belongs in ``run.failed`` or in the run's ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.exceptions import (
    AgentsException,
    ModelBehaviorError,
    ModelRefusalError,
    ModelTimeoutError,
    UserError,
)
from openai import OpenAIError


@dataclass(frozen=True)
class RunFailure:
    code: str
    message: str


MODEL_ERROR = RunFailure("model_error", "The model provider failed.")
AGENT_ERROR = RunFailure("agent_error", "The agent could not complete the run.")
INTERNAL_ERROR = RunFailure("internal_error", "The run failed unexpectedly.")

_MODEL_FAILURES = (OpenAIError, ModelBehaviorError, ModelRefusalError, ModelTimeoutError)


def failure_of(exc: BaseException) -> RunFailure:
    if isinstance(exc, _MODEL_FAILURES):
        return MODEL_ERROR
    # UserError is the SDK telling us our agents are misconfigured: our fault, not the agent's.
    if isinstance(exc, AgentsException) and not isinstance(exc, UserError):
        return AGENT_ERROR
    return INTERNAL_ERROR
