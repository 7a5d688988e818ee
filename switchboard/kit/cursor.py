"""Opaque page cursors: base64url of the compact JSON of the values a page ended at.

A cursor is described by a pydantic ``TypeAdapter`` of its values (a tuple, say of a timestamp
and an id). Decoding validates strictly and then accepts only the exact text encoding writes
for the values read, so a cursor a client altered, truncated or made up is refused whole,
never half read, whatever is wrong with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, TypeVar

from pydantic import AfterValidator, AwareDatetime, TypeAdapter
from pydantic_core import PydanticCustomError

from switchboard.kit.encoding import b64url_decode, b64url_encode
from switchboard.kit.errors import AppError

T = TypeVar("T")


def _utc(value: datetime) -> datetime:
    if value.utcoffset() != timedelta(0):
        raise PydanticCustomError("utc_only", "cursor timestamps are in UTC")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
"""A cursor's timestamp: its encoders write UTC, so no other offset is one of ours."""


class InvalidCursorError(AppError):
    status = 422
    code = "validation_error"
    title = "Unprocessable content"

    def __init__(self, message: str = "The cursor is not one this API returned.") -> None:
        super().__init__(
            message, errors=[{"loc": ["query", "cursor"], "msg": message, "type": "cursor_invalid"}]
        )


def encode_cursor(shape: TypeAdapter[T], values: T) -> str:
    return b64url_encode(shape.dump_json(values))


def decode_cursor(shape: TypeAdapter[T], cursor: str) -> T:
    """The values ``encode_cursor(shape, ...)`` wrote as ``cursor``; InvalidCursorError for
    any other text."""
    try:
        values = shape.validate_json(b64url_decode(cursor), strict=True)
        canonical = encode_cursor(shape, values)
    # ValidationError is a ValueError; OverflowError from a timestamp at the edge of the range.
    except (ValueError, OverflowError):
        raise InvalidCursorError() from None
    if canonical != cursor:
        raise InvalidCursorError()
    return values
