"""The OpenAPI document as the API answers: every error in it is a problem document.

Routes declare their errors with ``api.errors.problem_responses``; FastAPI adds a 422 of its
own to every operation that reads parameters or a body, with a schema our validation errors
do not have. This puts the ``Problem`` schema in its place.
"""

from __future__ import annotations

from typing import Any

from api.errors import SCHEMA_REF_TEMPLATE, Problem, problem_responses

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def describe_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Gives ``document`` (FastAPI's, changed in place) the ``Problem`` schema, and makes each
    422 FastAPI declared on its own a problem document."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=SCHEMA_REF_TEMPLATE)
    schemas.update({**problem.pop("$defs", {}), "Problem": problem})
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if _is_fastapi_validation(responses.get("422")):
                responses["422"] = problem_responses(422)[422]
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return document


def _is_fastapi_validation(response: dict[str, Any] | None) -> bool:
    if response is None:
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
