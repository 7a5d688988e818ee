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
    keys: list[SigningKeyRead]


class KeyRotationRequest(InputModel):
    action: Literal["rotate", "cutover"] = "rotate"


class TaskAccepted(BaseModel):
    task_id: str
