from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from switchboard.kit.text import InputModel, SafeStr

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000


class WebhookEventType(enum.StrEnum):
    run_completed = "run.completed"
    run_failed = "run.failed"
    run_cancelled = "run.cancelled"
    run_requires_action = "run.requires_action"
    usage_threshold_reached = "usage.threshold_reached"
    webhook_test = "webhook.test"


EventTypes = Annotated[
    list[WebhookEventType],
    Field(min_length=1, max_length=50, description="Event types to receive."),
]
Url = Annotated[SafeStr, Field(min_length=1, max_length=2048)]
Description = Annotated[SafeStr, Field(max_length=500)]


# The examples of the OpenAPI document (/docs, /redoc) show one endpoint throughout.
_ENDPOINT_ID = "3b8f0e2a-5c6d-4e7f-9a1b-2c3d4e5f6a7b"
_DELIVERY_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
_EVENT_ID = "f0e1d2c3-b4a5-4968-8776-655443322110"
_ENDPOINT: JsonDict = {
    "id": _ENDPOINT_ID,
    "url": "https://hooks.example.com/switchboard",
    "events": ["run.completed", "run.failed"],
    "description": "Order desk",
    "enabled": True,
    "disabled_reason": None,
    "failing_since": None,
    "created_at": "2026-12-03T11:00:00Z",
    "updated_at": "2026-12-03T11:00:00Z",
}


def _distinct(events: list[WebhookEventType] | None) -> list[WebhookEventType] | None:
    if events is None:
        return None
    return sorted(set(events), key=list(WebhookEventType).index)


class EndpointCreate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/switchboard",
                    "events": ["run.completed", "run.failed"],
                    "description": "Order desk",
                }
            ]
        }
    )

    url: Url
    events: EventTypes
    description: Description | None = None

    _events = field_validator("events")(_distinct)


class EndpointUpdate(InputModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"events": ["run.completed", "run.failed", "run.requires_action"]},
                {"enabled": True},
            ]
        }
    )

    url: Url | None = None
    events: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None

    _events = field_validator("events")(_distinct)


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_ENDPOINT]})

    id: uuid.UUID
    url: str
    events: list[WebhookEventType]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(
        description="Why the endpoint was disabled: `failing` when Switchboard disabled it after"
        " its attempts failed for the whole failure window, `null` otherwise."
    )
    failing_since: datetime | None = Field(
        description="Since when every attempt to this endpoint has failed; `null` when the last"
        " attempt succeeded."
    )
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointRead):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_ENDPOINT, "secret": "whsec_FV37lMrplx8sAuRhJlkWrTd1CXdbhZn439NH8ksmWOw="}
            ]
        }
    )

    secret: str = Field(description="The signing secret (`whsec_...`); shown only here.")


class SecretRotated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "secret": "whsec_r3wkeZ4wuPMGHCMZtrzr2N/aga6f+NWYhMB+sCUBBhU=",
                    "previous_secret_expires_at": "2026-12-04T11:00:00Z",
                }
            ]
        }
    )

    secret: str = Field(description="The new signing secret; shown only here.")
    previous_secret_expires_at: datetime = Field(
        description="Until then the old secret signs every delivery alongside the new one."
    )


class AttemptRead(BaseModel):
    """One delivery attempt to an endpoint, or the note that the endpoint was disabled."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170",
                    "delivery_id": _DELIVERY_ID,
                    "event_id": _EVENT_ID,
                    "event_type": "run.completed",
                    "status": "failed",
                    "response_status": 503,
                    "duration_ms": 212,
                    "error": "http_status",
                    "attempt": 1,
                    "created_at": "2026-12-03T11:05:00Z",
                    "next_attempt_at": "2026-12-03T11:05:05Z",
                }
            ]
        }
    )

    id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID = Field(description="The event's id, sent as `webhook-id`.")
    event_type: str
    status: str = Field(description="`succeeded`, `failed` or `endpoint_disabled`.")
    response_status: int | None
    duration_ms: int | None
    error: str | None = Field(
        description="Why the attempt failed: `http_status`, `timeout`, `connection_failed`,"
        " `tls_failed`, `redirect_not_followed`, `address_not_allowed`, `name_not_resolved`,"
        " `invalid_url`, `secret_unreadable`, or for a disabling `failing`."
    )
    attempt: int = Field(description="1 for the first attempt of a delivery.")
    created_at: datetime
    next_attempt_at: datetime | None = Field(
        description="When the delivery is tried again; `null` once it succeeded or gave up."
    )


class DeliveryQueued(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"event_id": _EVENT_ID, "delivery_id": _DELIVERY_ID}]}
    )

    event_id: uuid.UUID
    delivery_id: uuid.UUID
