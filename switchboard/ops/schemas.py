from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class TaskFailureCreate(BaseModel):
    task_id: str
    task_name: str
    call_args: list[Any]
    call_kwargs: dict[str, Any]
    exception_type: str
    message: str
    traceback: str
    request_id: str | None = None
    retries: int = 0


class TaskFailureRead(TaskFailureCreate):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    failed_at: datetime
