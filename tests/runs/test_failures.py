"""Which code and fixed message a failed run tells its client, per kind of failure: from the
exceptions themselves, and from the ones the openai client raises for a provider's answers over
HTTP. The provider's own words (which can quote the request) never reach the message.

Through a real runs worker and the API, in both wire formats, in tests/e2e/test_provider.py."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai
import pytest
from agents.exceptions import (
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelRefusalError,
    ModelTimeoutError,
    UserError,
)
from sqlalchemy.exc import ProgrammingError

from switchboard.runs.failures import (
    AGENT_ERROR,
    CONTEXT_LENGTH_EXCEEDED,
    INTERNAL_ERROR,
    MODEL_AUTH,
    MODEL_ERROR,
    MODEL_REFUSED,
    MODEL_UNAVAILABLE,
    RunFailure,
    failure_of,
)
from tests.support.openai_server import Failure, OpenAIServer, Reply
from tests.support.processes import free_port

PROVIDER_DETAIL = "provider-detail-quoting-the-request-91c4"

# openai's client is built on httpx2; its exceptions carry httpx2's requests and responses, and
# the error object the client unwraps from the body ({"error": {...}}) as ``body``.
CHAT_URL = "http://llm/v1/chat/completions"


def _request() -> httpx2.Request:
    return httpx2.Request("POST", CHAT_URL)


def _response(status: int, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, request=_request())


def _error(code: str | None, type: str = "invalid_request_error") -> dict[str, Any]:
    return {"message": PROVIDER_DETAIL, "type": type, "param": None, "code": code}


PROVIDER_FAILURES = [
    # A provider that stays down once the client's retries are spent.
    (openai.APIConnectionError(message=PROVIDER_DETAIL, request=_request()), MODEL_UNAVAILABLE),
    (openai.APITimeoutError(request=_request()), MODEL_UNAVAILABLE),
    (ModelTimeoutError(30), MODEL_UNAVAILABLE),
    (
        openai.RateLimitError(
            PROVIDER_DETAIL,
            response=_response(429, **{"retry-after": "2"}),
            body=_error("rate_limit_exceeded", "requests"),
        ),
        MODEL_UNAVAILABLE,
    ),
    (
        openai.RateLimitError(
            PROVIDER_DETAIL, response=_response(429), body=_error("insufficient_quota")
        ),
        MODEL_UNAVAILABLE,
    ),
    (
        openai.InternalServerError(
            PROVIDER_DETAIL, response=_response(500), body=_error(None, "server_error")
        ),
        MODEL_UNAVAILABLE,
    ),
    (
        openai.InternalServerError(PROVIDER_DETAIL, response=_response(503), body=PROVIDER_DETAIL),
        MODEL_UNAVAILABLE,
    ),
    (
        openai.APIStatusError(PROVIDER_DETAIL, response=_response(408), body=None),
        MODEL_UNAVAILABLE,
    ),
    # Our credentials.
    (
        openai.AuthenticationError(
            PROVIDER_DETAIL, response=_response(401), body=_error("invalid_api_key")
        ),
        MODEL_AUTH,
    ),
    (
        openai.PermissionDeniedError(
            PROVIDER_DETAIL, response=_response(403), body=_error("unsupported_country_region")
        ),
        MODEL_AUTH,
    ),
    # The conversation outgrew the model.
    (
        openai.BadRequestError(
            PROVIDER_DETAIL, response=_response(400), body=_error("context_length_exceeded")
        ),
        CONTEXT_LENGTH_EXCEEDED,
    ),
    # Refusals: the SDK's (a refusal, or Chat Completions' content_filter finish), openai's,
    # and a 400 from OpenAI's or Azure's content policy.
    (ModelRefusalError(PROVIDER_DETAIL), MODEL_REFUSED),
    (openai.ContentFilterFinishReasonError(), MODEL_REFUSED),
    (
        openai.BadRequestError(
            PROVIDER_DETAIL, response=_response(400), body=_error("content_policy_violation")
        ),
        MODEL_REFUSED,
    ),
    (
        openai.BadRequestError(
            PROVIDER_DETAIL, response=_response(400), body=_error("content_filter")
        ),
        MODEL_REFUSED,
    ),
    # Anything else the provider refused or answered.
    (
        openai.BadRequestError(PROVIDER_DETAIL, response=_response(400), body=_error(None)),
        MODEL_ERROR,
    ),
    (
        openai.NotFoundError(
            PROVIDER_DETAIL, response=_response(404), body=_error("model_not_found")
        ),
        MODEL_ERROR,
    ),
    (
        openai.ConflictError(PROVIDER_DETAIL, response=_response(409), body=_error(None)),
        MODEL_ERROR,
    ),
    (
        openai.APIResponseValidationError(_response(200), body=PROVIDER_DETAIL),
        MODEL_ERROR,
    ),
    (ModelBehaviorError("the model called a tool that does not exist"), MODEL_ERROR),
    # Not the provider's.
    (MaxTurnsExceeded("Max turns (10) exceeded"), AGENT_ERROR),
    (UserError("an agent is misconfigured"), INTERNAL_ERROR),
    (ProgrammingError("SELECT secret", {}, Exception("relation missing")), INTERNAL_ERROR),
    (KeyError("secret"), INTERNAL_ERROR),
]


@pytest.mark.parametrize(
    ("exc", "expected"),
    PROVIDER_FAILURES,
    ids=[f"{type(exc).__name__}-{expected.code}" for exc, expected in PROVIDER_FAILURES],
)
def test_each_kind_of_failure_has_its_fixed_code_and_message(
    exc: Exception, expected: RunFailure
) -> None:
    failure = failure_of(exc)
    assert failure == expected
    assert PROVIDER_DETAIL not in failure.message
    assert "http://llm" not in failure.message


def test_every_code_has_its_own_message() -> None:
    failures = {failure for _, failure in PROVIDER_FAILURES}
    assert len({failure.code for failure in failures}) == len(failures)
    assert len({failure.message for failure in failures}) == len(failures)


# The same failures as the client raises them, from a provider answering over HTTP: the client
# unwraps {"error": {...}} and picks the exception class, as it does in the worker.
SCRIPTS: dict[str, Failure] = {
    "rate-limited": Failure(429, PROVIDER_DETAIL, code="rate_limit_exceeded", retry_after=0),
    "down": Failure(503, PROVIDER_DETAIL, type="server_error"),
    "bad-key": Failure(401, PROVIDER_DETAIL, "invalid_request_error", "invalid_api_key"),
    "forbidden": Failure(403, PROVIDER_DETAIL, "invalid_request_error"),
    "too-long": Failure(400, PROVIDER_DETAIL, "invalid_request_error", "context_length_exceeded"),
    "refused": Failure(400, PROVIDER_DETAIL, "invalid_request_error", "content_policy_violation"),
    "bad-request": Failure(400, PROVIDER_DETAIL, "invalid_request_error"),
}


async def _chat(base_url: str, **options: Any) -> None:
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0, **options)
    async with client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in stream:
            pass


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("rate-limited", MODEL_UNAVAILABLE),
        ("down", MODEL_UNAVAILABLE),
        ("bad-key", MODEL_AUTH),
        ("forbidden", MODEL_AUTH),
        ("too-long", CONTEXT_LENGTH_EXCEEDED),
        ("refused", MODEL_REFUSED),
        ("bad-request", MODEL_ERROR),
    ],
)
async def test_the_clients_own_exceptions_get_their_codes(
    openai_server: OpenAIServer, script: str, expected: RunFailure
) -> None:
    openai_server.push(SCRIPTS[script])
    with pytest.raises(openai.OpenAIError) as raised:
        await _chat(openai_server.base_url)
    assert PROVIDER_DETAIL in str(raised.value)
    assert failure_of(raised.value) == expected


async def test_a_provider_that_cannot_be_reached_is_unavailable() -> None:
    with pytest.raises(openai.OpenAIError) as raised:
        await _chat(f"http://127.0.0.1:{free_port()}/v1")
    assert failure_of(raised.value) == MODEL_UNAVAILABLE


async def test_a_stream_that_stalls_is_cut_by_the_read_timeout_and_is_unavailable(
    openai_server: OpenAIServer,
) -> None:
    # The stall outlasts the test's own time limit: only the read timeout can end the call.
    openai_server.push(Reply("Hel lo", stall_after=1, stall_seconds=120))
    with pytest.raises(openai.APITimeoutError) as raised:
        await _chat(openai_server.base_url, timeout=httpx2.Timeout(5, read=0.3))
    assert failure_of(raised.value) == MODEL_UNAVAILABLE
    # The client hung up mid-stall, after the delta sent before it.
    gone = await asyncio.to_thread(openai_server.wait_for_disconnect)
    assert (gone.request_index, gone.deltas_sent) == (0, 1)
    assert len(openai_server.requests) == 1
