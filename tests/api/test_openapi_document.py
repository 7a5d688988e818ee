"""The OpenAPI document names what each operation answers: every error a problem document
(the fuzz test in tests/fuzz checks the answers against it), and no success that has no body
described as JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.errors import PROBLEM_MEDIA_TYPE
from api.main import create_app
from switchboard.settings import Settings

PROBLEM_CONTENT = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
# The one error answer that is not a problem document: readiness answers its checks.
NOT_PROBLEMS = {("GET", "/health/ready", "503")}


@pytest.fixture(scope="module")
def document(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_every_error_answer_is_a_problem_document(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or (method, path, status) in NOT_PROBLEMS:
                continue
            assert response["content"] == PROBLEM_CONTENT, (method, path, status)
            assert "`" in response["description"], (method, path, status)  # names its codes


def test_validation_errors_are_problems_not_fastapis_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail", "code"]
    for method, path, operation in operations(document):
        takes_input = "parameters" in operation or "requestBody" in operation
        if takes_input:
            assert "422" in operation["responses"], (method, path)


def test_every_authenticated_operation_declares_401(document: dict[str, Any]) -> None:
    authenticated = [
        (method, path, operation)
        for method, path, operation in operations(document)
        if operation.get("security")
    ]
    assert len(authenticated) > 25
    for method, path, operation in authenticated:
        assert "401" in operation["responses"], (method, path)


def test_every_operation_with_a_body_declares_413_and_422(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if "requestBody" in operation:
            assert {"413", "422"} <= set(operation["responses"]), (method, path)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/v1/auth/password/forgot", "202"),
        ("POST", "/api/v1/runs/{run_id}/cancel", "202"),
        ("POST", "/api/v1/billing/webhooks/stripe", "200"),
    ],
)
def test_a_success_without_a_body_has_no_content(
    document: dict[str, Any], method: str, path: str, status: str
) -> None:
    assert "content" not in document["paths"][path][method.lower()]["responses"][status]


def test_no_content_answers_have_no_content(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status in ("204", "304"):
            if status in operation["responses"]:
                assert "content" not in operation["responses"][status], (method, path)
