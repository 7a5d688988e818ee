from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from switchboard.kit.text import InputModel
from switchboard.models import KeyState


class SigningKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kid: str
    state: KeyState
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    removed_at: datetime | None


class KeySetRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "keys": [
                        {
                            "kid": "7UXOdHeYGF-vMWQKQn9pNabG2fNs1Ho31AViWLgMh7U",
                            "state": "active",
                            "created_at": "2026-11-03T02:00:00Z",
                            "activated_at": "2026-11-05T02:00:00Z",
                            "retired_at": None,
                            "removed_at": None,
                        },
                        {
                            "kid": "YE_ciUzY0vesiC7p7Kn97yMmY8_gbM9n9n7srCRHZDk",
                            "state": "next",
                            "created_at": "2026-12-01T02:00:00Z",
                            "activated_at": None,
                            "retired_at": None,
                            "removed_at": None,
                        },
                    ]
                }
            ]
        }
    )

    keys: list[SigningKeyRead]


class KeyRotationRequest(InputModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"action": "rotate"}]})

    action: Literal["rotate", "cutover"] = "rotate"


class TaskAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"task_id": "b6f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}]}
    )

    task_id: str
