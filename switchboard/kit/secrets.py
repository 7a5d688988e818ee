"""Marking secrets whose default only makes sense on a developer's machine."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo

INSECURE_MARK = "insecure_default"


def insecure_default(value: str, description: str) -> Any:
    """A secret with a development default; settings refuse it outside development and test."""
    return Field(
        default=SecretStr(value), description=description, json_schema_extra={INSECURE_MARK: True}
    )


def is_insecure_default(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get(INSECURE_MARK) is True
