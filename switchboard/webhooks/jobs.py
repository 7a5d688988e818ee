"""Task names of the webhooks domain, shared by producers and the worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import NamedTuple

from switchboard.kit.jobs import Job

DELIVER = "webhooks.deliver"
DISPATCH = "webhooks.dispatch"


class DeliveryRef(NamedTuple):
    id: uuid.UUID
    endpoint_id: uuid.UUID


def deliver_jobs(
    deliveries: Iterable[DeliveryRef], *, countdown: float | None = None, busy: int = 0
) -> list[Job]:
    """``busy``: how many times in a row the delivery found its endpoint busy."""
    return [
        Job(
            DELIVER,
            (str(delivery.id), str(delivery.endpoint_id)),
            {"busy": busy} if busy else {},
            queue="webhooks",
            countdown=countdown,
        )
        for delivery in deliveries
    ]
