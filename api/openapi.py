"""The OpenAPI document as the API answers: every error in it is a problem document, and the
examples of its schemas are whole.

Routes declare their errors with ``api.errors.problem_responses``; FastAPI adds a 422 of its
own to every operation that reads parameters or a body, with a schema our validation errors
do not have. This puts the ``Problem`` schema in its place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

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


def restore_example_nulls(document: dict[str, Any]) -> dict[str, Any]:
    """Gives each schema of ``document`` (changed in place) that is one of our models the
    examples the model declares.

    FastAPI writes the document without any null (``exclude_none``), those inside examples
    too, so the example of a model with a required nullable field (``"error": null``) would
    lack the field, and Swagger UI and ReDoc would show an answer the API never gives.
    """
    models = _our_models()
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        model = models.get(name)
        if model is not None and "examples" in schema and schema.get("title") == name:
            schema["examples"] = model.model_json_schema()["examples"]
    return document


def _our_models() -> dict[str, type[BaseModel]]:
    """Switchboard's models by name, leaving out a name two models share (FastAPI names
    their schemas by module then)."""
    models = {
        model for model in _subclasses(BaseModel) if model.__module__.startswith(_OUR_PACKAGES)
    }
    counts = Counter(model.__name__ for model in models)
    return {model.__name__: model for model in models if counts[model.__name__] == 1}


_OUR_PACKAGES = ("switchboard.", "api.")


def _subclasses(base: type[BaseModel]) -> Iterator[type[BaseModel]]:
    for model in base.__subclasses__():
        yield model
        yield from _subclasses(model)
