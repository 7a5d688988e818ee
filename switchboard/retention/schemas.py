from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class TenantDeletionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deleted: dict[str, int]
