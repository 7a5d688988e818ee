"""Reporting metered tokens to Stripe exactly once, from our side.

Every finished run leaves one ``usage_record`` (``pending``). A report first folds a tenant's
pending records into a batch: in one transaction they get a batch id and the state
``sending``. Only then is the batch's meter event sent, with ``identifier`` and idempotency key
``usage-<batch id>``. Success marks the records ``reported``. A failure, a timeout or a dead
worker leaves them ``sending``, and the next report sends the same batch with the same
identifier: Stripe keeps one event per identifier, so the tokens count once whatever happened
to the first attempt. Records of a tenant with no Stripe customer are ``skipped``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from switchboard.billing.errors import PermanentStripeError
from switchboard.billing.gateway import TRANSIENT, StripeGateway
from switchboard.billing.metrics import USAGE_REPORT_FAILURES, USAGE_REPORTED
from switchboard.billing.repository import BillingRepository
from switchboard.kit.db import SessionMaker

log = structlog.get_logger("switchboard.billing")

NO_BATCH = uuid.UUID(int=0)  # pending records, not yet in a batch (dry run)


@dataclass(frozen=True)
class Batch:
    id: uuid.UUID
    tenant_id: uuid.UUID
    customer_id: str
    records: int
    tokens: int
    # The newest run in it: every attempt must send the same parameters, or Stripe refuses
    # the idempotency key.
    at: datetime

    @property
    def identifier(self) -> str:
        return f"usage-{self.id}"


@dataclass
class ReportSummary:
    reported: list[Batch] = field(default_factory=list)
    failed: list[Batch] = field(default_factory=list)
    skipped_records: int = 0

    @property
    def tokens(self) -> int:
        return sum(batch.tokens for batch in self.reported)


async def unreported(sessionmaker: SessionMaker) -> list[Batch]:
    """What a report would send now, without changing anything (``--dry-run``)."""
    return await _batches(sessionmaker, ("pending", "sending"), billable_only=False)


async def report_usage(
    sessionmaker: SessionMaker, gateway: StripeGateway, *, batch_size: int
) -> ReportSummary:
    summary = ReportSummary()
    summary.skipped_records = await _skip_unbillable(sessionmaker)
    await _form_batches(sessionmaker, batch_size)
    for batch in await _open_batches(sessionmaker):
        try:
            await gateway.report_tokens(
                batch.identifier, customer_id=batch.customer_id, tokens=batch.tokens, at=batch.at
            )
        except (*TRANSIENT, PermanentStripeError) as exc:
            USAGE_REPORT_FAILURES.inc()
            await _note_failure(sessionmaker, batch, f"{type(exc).__name__}: {exc}")
            summary.failed.append(batch)
            continue
        await _mark_reported(sessionmaker, batch)
        USAGE_REPORTED.inc(batch.tokens)
        summary.reported.append(batch)
    if summary.reported or summary.failed:
        log.info(
            "billing.usage_reported",
            batches=len(summary.reported),
            tokens=summary.tokens,
            failed=len(summary.failed),
        )
    return summary


async def _skip_unbillable(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session, session.begin():
        return await BillingRepository(session).skip_unbillable_usage()


async def _form_batches(sessionmaker: SessionMaker, batch_size: int) -> None:
    """Folds each tenant's pending records into batches of at most ``batch_size``."""
    async with sessionmaker() as session, session.begin():
        repo = BillingRepository(session)
        by_tenant: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for record_id, tenant_id in await repo.pending_usage():
            by_tenant[tenant_id].append(record_id)
        for ids in by_tenant.values():
            for start in range(0, len(ids), batch_size):
                await repo.batch_usage(ids[start : start + batch_size])


async def _open_batches(sessionmaker: SessionMaker) -> list[Batch]:
    return await _batches(sessionmaker, ("sending",), billable_only=True)


async def _batches(
    sessionmaker: SessionMaker, states: tuple[str, ...], *, billable_only: bool
) -> list[Batch]:
    """Records in these states, summed per batch (pending ones form one row per tenant)."""
    async with sessionmaker() as session:
        totals = await BillingRepository(session).usage_batches(states, billable_only=billable_only)
    return [
        Batch(
            total.batch_id or NO_BATCH,
            total.tenant_id,
            total.customer_id or "",
            total.records,
            total.tokens,
            total.newest_at,
        )
        for total in totals
    ]


async def _mark_reported(sessionmaker: SessionMaker, batch: Batch) -> None:
    async with sessionmaker() as session, session.begin():
        await BillingRepository(session).mark_batch_reported(
            batch.id, identifier=batch.identifier, now=datetime.now(UTC)
        )


async def _note_failure(sessionmaker: SessionMaker, batch: Batch, error: str) -> None:
    async with sessionmaker() as session, session.begin():
        await BillingRepository(session).note_batch_failure(batch.id, error)
    log.warning("billing.usage_report_failed", batch=str(batch.id), error=error)
