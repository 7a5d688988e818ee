"""Text a client may send: no NUL characters and no lone surrogates.

Postgres cannot store either in a text column (the insert fails with a data error) and neither
encodes as UTF-8, so both are refused where the input is validated, as a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, field_validator
from pydantic_core import PydanticCustomError


def _unsafe_reason(value: str) -> str | None:
    if "\x00" in value:
        return "NUL characters are not allowed"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogates are not allowed (the text is not valid UTF-8)"
    return None


def check_text(value: str) -> str:
    reason = _unsafe_reason(value)
    if reason is not None:
        raise PydanticCustomError("string_unsafe", reason)
    return value


def _check_nested(value: Any) -> None:
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_nested(key)
            _check_nested(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_nested(item)


SafeStr = Annotated[str, AfterValidator(check_text)]
"""A query, path, header or form parameter of text."""


class InputModel(BaseModel):
    """Base of every request body: each field, nested values included, holds safe text only."""

    @field_validator("*", mode="before")
    @classmethod
    def _safe_text(cls, value: Any) -> Any:
        _check_nested(value)
        return value
