from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class TenantDeletionRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "e4d3c2b1-a098-4f7e-8d6c-5b4a39281706",
                    "status": "done",
                    "requested_at": "2026-12-03T10:00:00Z",
                    "started_at": "2026-12-03T10:00:01Z",
                    "finished_at": "2026-12-03T10:00:04Z",
                    "deleted": {
                        "run_event_buffers": 24,
                        "conversation": 7,
                        "run": 24,
                        "membership": 3,
                        "refresh_token": 9,
                        "service_account": 1,
                        "invitation": 1,
                        "webhook_endpoint": 1,
                        "webhook_event": 20,
                        "webhook_delivery": 20,
                        "webhook_attempt": 23,
                    },
                }
            ]
        },
    )

    id: uuid.UUID
    status: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    deleted: dict[str, int]
