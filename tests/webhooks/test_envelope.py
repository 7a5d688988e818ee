"""The body every delivery carries: Standard Webhooks' {type, timestamp, data}, bounded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

from switchboard.webhooks.delivery import envelope
from switchboard.webhooks.repository import ClaimedDelivery


def claimed(data: dict[str, object], created_at: datetime | None = None) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        attempt=1,
        endpoint_id=uuid.uuid4(),
        url="https://hooks.example.com",
        secret=b"",
        previous_secret=None,
        previous_secret_expires_at=None,
        event_id=uuid.uuid4(),
        event_type="run.requires_action",
        data=data,
        event_created_at=created_at or datetime.now(UTC),
    )


def test_the_body_is_the_type_the_events_time_in_utc_and_its_data() -> None:
    moment = datetime(2026, 12, 3, 19, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    body = json.loads(envelope(claimed({"id": "r1", "n": 2}, moment), max_bytes=65_536))
    assert body == {
        "type": "run.requires_action",
        "timestamp": "2026-12-03T17:30:05.123456Z",
        "data": {"id": "r1", "n": 2},
    }


def test_data_too_large_is_cut_to_its_short_top_level_scalars_and_marked() -> None:
    data = {
        "id": "run-1",
        "status": "requires_action",
        "attempts": 3,
        "approvals": [{"arguments": "x" * 10_000}],
        "note": "y" * 500,
    }
    raw = envelope(claimed(data), max_bytes=2048)
    assert len(raw) <= 2048
    body = json.loads(raw)
    assert body["data"] == {
        "id": "run-1",
        "status": "requires_action",
        "attempts": 3,
        "truncated": True,
    }


def test_data_that_fits_is_sent_whole() -> None:
    data = {"approvals": [{"arguments": "x" * 1000}]}
    assert json.loads(envelope(claimed(data), max_bytes=2048))["data"] == data
