"""What a failed run tells its client: a fixed code and message per kind of failure.

The exception's own text stays in the worker's log. A provider's error can quote the request
(the conversation, the model's settings) or the provider's internals, and ours can quote SQL or
file paths; neither belongs in ``run.failed`` or in the run's ``error``.

The provider's client has already retried what is worth retrying (429 and 5xx, with backoff)
by the time an exception reaches here, so a 429 or 5xx means the provider stayed down.
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
from openai import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ContentFilterFinishReasonError,
    OpenAIError,
    PermissionDeniedError,
)


@dataclass(frozen=True)
class RunFailure:
    code: str
    message: str


MODEL_ERROR = RunFailure("model_error", "The model provider failed.")
MODEL_UNAVAILABLE = RunFailure(
    "model_unavailable", "The model provider is unavailable right now. Try again in a few minutes."
)
MODEL_AUTH = RunFailure(
    "model_auth", "The model provider refused this service's credentials. Contact its operator."
)
CONTEXT_LENGTH_EXCEEDED = RunFailure(
    "context_length_exceeded",
    "The conversation is too long for the model. Start a new conversation.",
)
MODEL_REFUSED = RunFailure("model_refused", "The model declined to answer this request.")
AGENT_ERROR = RunFailure("agent_error", "The agent could not complete the run.")
INTERNAL_ERROR = RunFailure("internal_error", "The run failed unexpectedly.")
# Not raised: the executor stops a run at RUNS_MAX_SECONDS and fails it with this.
TIMEOUT = RunFailure("timeout", "The run took too long and was stopped.")

# Error codes in the body of a 400 (``error.code``): OpenAI's, and Azure OpenAI's for its filter.
_REFUSAL_CODES = frozenset({"content_filter", "content_policy_violation"})


def failure_of(exc: BaseException) -> RunFailure:
    if isinstance(exc, APIStatusError):
        return _provider_answer(exc)
    # APITimeoutError is an APIConnectionError; both are raised mid-stream too (a read timeout).
    if isinstance(exc, APIConnectionError | ModelTimeoutError):
        return MODEL_UNAVAILABLE
    if isinstance(exc, ModelRefusalError | ContentFilterFinishReasonError):
        return MODEL_REFUSED
    if isinstance(exc, OpenAIError | ModelBehaviorError):
        return MODEL_ERROR
    # UserError is the SDK telling us our agents are misconfigured: our fault, not the agent's.
    if isinstance(exc, AgentsException) and not isinstance(exc, UserError):
        return AGENT_ERROR
    return INTERNAL_ERROR


def _provider_answer(exc: APIStatusError) -> RunFailure:
    if exc.code == "context_length_exceeded":
        return CONTEXT_LENGTH_EXCEEDED
    if exc.code in _REFUSAL_CODES:
        return MODEL_REFUSED
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return MODEL_AUTH
    # The statuses the client retries (a timeout, too many requests, the provider's own
    # failures); 409, which it retries too, is a conflict in the request, not an outage.
    if exc.status_code in (408, 429) or exc.status_code >= 500:
        return MODEL_UNAVAILABLE
    return MODEL_ERROR
