"""Metering: the usage record a finished run leaves, written by the statement that ends it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CTE, DateTime, Insert, Uuid, bindparam, literal, select
from sqlalchemy.dialects.postgresql import insert

from switchboard.billing.periods import period_of
from switchboard.models import UsageRecord

_record = UsageRecord.metadata.tables[UsageRecord.__tablename__]


def usage_of_finished_runs(finished: CTE) -> Insert:
    """The usage record of each run ``finished`` returns (its ``id``, ``tenant_id``,
    ``input_tokens`` and ``output_tokens``), for the statement that ends the run: the reply
    and its metering commit together, and a finished run is metered once, ever. Pass
    ``usage_parameters(...)`` with the statement."""
    return (
        insert(_record)
        .from_select(
            [
                "id",
                "tenant_id",
                "run_id",
                "input_tokens",
                "output_tokens",
                "period_start",
                "report_state",
                "report_attempts",
            ],
            select(
                bindparam("p_usage_id", type_=Uuid),
                finished.c.tenant_id,
                finished.c.id,
                finished.c.input_tokens,
                finished.c.output_tokens,
                bindparam("p_usage_period_start", type_=DateTime(timezone=True)),
                literal("pending"),
                literal(0),
            ),
            include_defaults=False,  # all are given: a Python default here would be bound once
        )
        .on_conflict_do_nothing(index_elements=[_record.c.run_id])
    )


def usage_parameters(*, at: datetime) -> dict[str, object]:
    """The values ``usage_of_finished_runs`` binds, for a run that ended ``at``."""
    return {"p_usage_id": uuid.uuid4(), "p_usage_period_start": period_of(at)[0]}
