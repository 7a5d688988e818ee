"""Queries of the billing tables: plans, customers, subscriptions, usage records, Stripe events.

Every statement of billing is here; the services hold the rules and the jobs their
transactions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CTE,
    DateTime,
    Insert,
    Integer,
    String,
    Uuid,
    bindparam,
    column,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.periods import period_of
from switchboard.kit.db import violated_constraint
from switchboard.models import (
    BillingCustomer,
    Invitation,
    Membership,
    Plan,
    StripeEvent,
    Subscription,
    Tenant,
    UsageRecord,
    UsageThreshold,
)
from switchboard.models.billing import ENDED_STATUSES

_record = UsageRecord.metadata.tables[UsageRecord.__tablename__]

# The partial unique index on Subscription: one live subscription per tenant.
LIVE_SUBSCRIPTION_INDEX = "uq_subscription_live_tenant"


def _record_crossed_thresholds() -> Insert:
    """The statement of ``BillingRepository.record_crossed_thresholds``, built once: its
    parameters are bound at each call (building it costs more than running it)."""
    tenant_id = bindparam("p_tenant_id", type_=Uuid)
    period_start = bindparam("p_period_start", type_=DateTime(timezone=True))
    plan_code = func.coalesce(
        select(Subscription.plan_code)
        .where(Subscription.tenant_id == tenant_id, Subscription.status.not_in(ENDED_STATUSES))
        .scalar_subquery(),
        bindparam("p_default_plan", type_=String),
    )
    done = exists().where(
        UsageThreshold.tenant_id == tenant_id,
        UsageThreshold.period_start == period_start,
        UsageThreshold.percent == bindparam("p_highest", type_=Integer),
    )
    limit = (
        select(Plan.monthly_tokens.label("limit_tokens"))
        .where(Plan.code == plan_code, Plan.monthly_tokens.is_not(None), ~done)
        .subquery("plan_limit")
    )
    # Lateral, so it is read only when the plan has a limit left to reach.
    used = (
        select(
            func.coalesce(func.sum(UsageRecord.input_tokens + UsageRecord.output_tokens), 0).label(
                "tokens"
            )
        )
        .where(UsageRecord.tenant_id == tenant_id, UsageRecord.period_start == period_start)
        .lateral("used")
    )
    threshold = (
        func.unnest(bindparam("p_percents", type_=ARRAY(Integer)))
        .table_valued(column("percent", Integer))
        .render_derived(name="threshold")
    )
    crossed = (
        select(
            tenant_id,
            period_start,
            threshold.c.percent,
            used.c.tokens,
            limit.c.limit_tokens,
            bindparam("p_now", type_=DateTime(timezone=True)),
        )
        .select_from(limit.join(used, true()).join(threshold, true()))
        .where(
            used.c.tokens > 0,
            used.c.tokens * 100 >= limit.c.limit_tokens * threshold.c.percent,
        )
    )
    # The table, not the mapped class: bound parameters given to an ORM insert would be
    # taken for rows to insert.
    table = UsageThreshold.metadata.tables[UsageThreshold.__tablename__]
    return (
        insert(table)
        .from_select(
            ["tenant_id", "period_start", "percent", "tokens", "limit_tokens", "reached_at"],
            crossed,
        )
        .on_conflict_do_nothing()
        .returning(table.c.percent, table.c.tokens, table.c.limit_tokens)
    )


_RECORD_CROSSED_THRESHOLDS = _record_crossed_thresholds()


def usage_of_finished_runs(finished: CTE) -> Insert:
    """The usage record of each run ``finished`` returns (its ``id``, ``tenant_id``,
    ``input_tokens``, ``output_tokens`` and ``cached_input_tokens``), for the statement that
    ends the run: the reply and its metering commit together, and a finished run is metered
    once, ever. Pass ``usage_parameters(...)`` with the statement."""
    return (
        insert(_record)
        .from_select(
            [
                "id",
                "tenant_id",
                "run_id",
                "input_tokens",
                "output_tokens",
                "cached_input_tokens",
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
                finished.c.cached_input_tokens,
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


@dataclass(frozen=True)
class PeriodUsage:
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    runs: int
    reported_quantity: int


@dataclass(frozen=True)
class CrossedThreshold:
    """A share of the month's tokens a tenant crossed, recorded just now."""

    percent: int
    tokens: int
    limit_tokens: int


@dataclass(frozen=True)
class UsageBatchTotals:
    """Usage records of one batch (or a tenant's pending ones, which have no batch yet)."""

    batch_id: uuid.UUID | None
    tenant_id: uuid.UUID
    customer_id: str | None
    records: int
    tokens: int
    newest_at: datetime


class BillingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def save(self) -> None:
        """Writes the changes made to loaded rows now."""
        await self.session.flush()

    # Plans.

    async def active_plans(self) -> list[Plan]:
        """Cheapest first."""
        rows = await self.session.scalars(
            select(Plan).where(Plan.active).order_by(Plan.seat_price_cents, Plan.code)
        )
        return list(rows)

    async def plans(self) -> list[Plan]:
        return list(await self.session.scalars(select(Plan)))

    async def plan(self, code: str) -> Plan | None:
        return await self.session.get(Plan, code)

    # Customers and subscriptions.

    async def save_customer(self, tenant_id: uuid.UUID, stripe_customer_id: str) -> None:
        customer = await self.session.get(BillingCustomer, tenant_id, with_for_update=True)
        if customer is None:
            self.session.add(
                BillingCustomer(tenant_id=tenant_id, stripe_customer_id=stripe_customer_id)
            )
        else:
            customer.stripe_customer_id = stripe_customer_id

    async def live_subscription(
        self, tenant_id: uuid.UUID, *, lock: bool = False
    ) -> Subscription | None:
        """The tenant's subscription that has not ended, if any (there is one at most)."""
        query = select(Subscription).where(
            Subscription.tenant_id == tenant_id, Subscription.status.not_in(ENDED_STATUSES)
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.scalars(query)).one_or_none()

    async def add_subscription(self, subscription: Subscription) -> bool:
        """Store it; False when the tenant has a live subscription after all (one committed
        between our check and this insert), with the transaction still usable."""
        try:
            async with self.session.begin_nested():
                self.session.add(subscription)
        except IntegrityError as error:
            if violated_constraint(error) != LIVE_SUBSCRIPTION_INDEX:
                raise
            return False
        return True

    async def subscription(
        self, subscription_id: uuid.UUID, *, lock: bool = False
    ) -> Subscription | None:
        return await self.session.get(Subscription, subscription_id, with_for_update=lock)

    async def subscription_with_plan(
        self, subscription_id: uuid.UUID
    ) -> tuple[Subscription, Plan, Tenant, str | None] | None:
        """The subscription with its plan, its tenant and the tenant's Stripe customer id."""
        row = (
            await self.session.execute(
                select(Subscription, Plan, Tenant, BillingCustomer.stripe_customer_id)
                .join(Plan, Plan.code == Subscription.plan_code)
                .join(Tenant, Tenant.id == Subscription.tenant_id)
                .outerjoin(BillingCustomer, BillingCustomer.tenant_id == Subscription.tenant_id)
                .where(Subscription.id == subscription_id)
            )
        ).one_or_none()
        if row is None:
            return None
        return row[0], row[1], row[2], row[3]

    async def unsynced_subscriptions(self, *, updated_before: datetime) -> list[uuid.UUID]:
        """Live subscriptions whose latest intent, last changed before then, is not synced."""
        rows = await self.session.scalars(
            select(Subscription.id).where(
                Subscription.synced_version < Subscription.sync_version,
                Subscription.status.not_in(ENDED_STATUSES),
                Subscription.updated_at < updated_before,
            )
        )
        return list(rows)

    async def subscription_for_stripe(
        self, stripe_id: str | None, subscription_id: uuid.UUID | None
    ) -> Subscription | None:
        """Locked: ours by Stripe's id or by the id we gave Stripe in its metadata."""
        conditions = []
        if stripe_id is not None:
            conditions.append(Subscription.stripe_subscription_id == stripe_id)
        if subscription_id is not None:
            conditions.append(Subscription.id == subscription_id)
        if not conditions:
            return None
        query = select(Subscription).where(or_(*conditions)).with_for_update()
        return (await self.session.scalars(query)).first()

    # Seats.

    async def seats_in_use(self, tenant_id: uuid.UUID, now: datetime) -> int:
        """The tenant's members plus its pending invitations: the one count of seats in use.

        The tenant's row is locked first (FOR NO KEY UPDATE, which holds up no insert that
        references the tenant), in a statement of its own (a count in the locking statement
        would see the rows of before the wait), so invitations and seat changes of one tenant
        take turns and each counts what the one before committed."""
        await self.session.execute(
            select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True)
        )
        members = (
            select(func.count())
            .select_from(Membership)
            .where(Membership.tenant_id == tenant_id)
            .scalar_subquery()
        )
        invitations = (
            select(func.count())
            .select_from(Invitation)
            .where(
                Invitation.tenant_id == tenant_id,
                Invitation.pending_at(now),
            )
            .scalar_subquery()
        )
        return int(await self.session.scalar(select(members + invitations)) or 0)

    # Usage.

    async def period_usage(self, tenant_id: uuid.UUID, period_start: datetime) -> PeriodUsage:
        row = (
            await self.session.execute(
                select(
                    func.coalesce(func.sum(UsageRecord.input_tokens), 0),
                    func.coalesce(func.sum(UsageRecord.output_tokens), 0),
                    func.coalesce(func.sum(UsageRecord.cached_input_tokens), 0),
                    func.count(),
                    func.coalesce(func.sum(UsageRecord.reported_quantity), 0),
                ).where(
                    UsageRecord.tenant_id == tenant_id, UsageRecord.period_start == period_start
                )
            )
        ).one()
        return PeriodUsage(
            input_tokens=int(row[0]),
            output_tokens=int(row[1]),
            cached_input_tokens=int(row[2]),
            runs=int(row[3]),
            reported_quantity=int(row[4] or 0),
        )

    async def skip_unbillable_usage(self) -> int:
        """Marks ``skipped`` the pending records of tenants without a Stripe customer."""
        billable = select(BillingCustomer.tenant_id).where(
            BillingCustomer.stripe_customer_id.is_not(None)
        )
        result = await self.session.execute(
            update(UsageRecord)
            .where(UsageRecord.report_state == "pending", UsageRecord.tenant_id.not_in(billable))
            .values(report_state="skipped")
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def pending_usage(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """``(record id, tenant id)`` of pending records, by tenant then age, locked; records
        another transaction holds are left out."""
        rows = await self.session.execute(
            select(UsageRecord.id, UsageRecord.tenant_id)
            .where(UsageRecord.report_state == "pending")
            .order_by(UsageRecord.tenant_id, UsageRecord.created_at)
            .with_for_update(skip_locked=True)
        )
        return [(record_id, tenant_id) for record_id, tenant_id in rows]

    async def batch_usage(self, record_ids: list[uuid.UUID]) -> uuid.UUID:
        """Puts the records in a new batch, ``sending``; returns the batch id."""
        batch_id = uuid.uuid4()
        await self.session.execute(
            update(UsageRecord)
            .where(UsageRecord.id.in_(record_ids))
            .values(report_state="sending", report_batch_id=batch_id)
        )
        return batch_id

    async def usage_batches(
        self, states: tuple[str, ...], *, billable_only: bool
    ) -> list[UsageBatchTotals]:
        """Records in these states, summed per batch (pending ones form one row per tenant);
        ``billable_only`` keeps formed batches of tenants with a Stripe customer."""
        query = (
            select(
                UsageRecord.report_batch_id,
                UsageRecord.tenant_id,
                BillingCustomer.stripe_customer_id,
                func.count(),
                func.sum(UsageRecord.input_tokens + UsageRecord.output_tokens),
                func.max(UsageRecord.created_at),
            )
            .join(
                BillingCustomer,
                BillingCustomer.tenant_id == UsageRecord.tenant_id,
                isouter=not billable_only,
            )
            .where(UsageRecord.report_state.in_(states))
            .group_by(
                UsageRecord.report_batch_id,
                UsageRecord.tenant_id,
                BillingCustomer.stripe_customer_id,
            )
        )
        if billable_only:
            query = query.where(
                UsageRecord.report_batch_id.is_not(None),
                BillingCustomer.stripe_customer_id.is_not(None),
            )
        rows = await self.session.execute(query)
        return [
            UsageBatchTotals(batch_id, tenant_id, customer_id, int(count), int(tokens), at)
            for batch_id, tenant_id, customer_id, count, tokens, at in rows
        ]

    async def mark_batch_reported(
        self, batch_id: uuid.UUID, *, identifier: str, now: datetime
    ) -> None:
        await self.session.execute(
            update(UsageRecord)
            .where(UsageRecord.report_batch_id == batch_id, UsageRecord.report_state == "sending")
            .values(
                report_state="reported",
                reported_quantity=UsageRecord.input_tokens + UsageRecord.output_tokens,
                stripe_identifier=identifier,
                reported_at=now,
                report_attempts=UsageRecord.report_attempts + 1,
                last_error=None,
            )
        )

    async def note_batch_failure(self, batch_id: uuid.UUID, error: str) -> None:
        await self.session.execute(
            update(UsageRecord)
            .where(UsageRecord.report_batch_id == batch_id)
            .values(report_attempts=UsageRecord.report_attempts + 1, last_error=error[:1000])
        )

    async def record_crossed_thresholds(
        self,
        tenant_id: uuid.UUID,
        period_start: datetime,
        *,
        percents: tuple[int, ...],
        default_plan: str,
        now: datetime,
    ) -> list[CrossedThreshold]:
        """Records each of ``percents`` of the monthly tokens of the tenant's plan (its live
        subscription's, else ``default_plan``) that its usage in the period has reached and
        that is not recorded yet; returns those this call recorded. One statement: a plan
        without a token limit, or a period whose highest threshold is recorded already, reads
        no usage at all, and of two concurrent calls only one records (and returns) a row."""
        rows = await self.session.execute(
            _RECORD_CROSSED_THRESHOLDS,
            {
                "p_tenant_id": tenant_id,
                "p_period_start": period_start,
                "p_percents": list(percents),
                "p_highest": max(percents),
                "p_default_plan": default_plan,
                "p_now": now,
            },
        )
        return sorted(
            (CrossedThreshold(int(p), int(t), int(limit)) for p, t, limit in rows),
            key=lambda crossed: crossed.percent,
        )

    # Stripe events.

    async def store_event(self, event: dict[str, Any]) -> bool:
        """True if the event was not stored yet (a redelivery inserts nothing)."""
        inserted = await self.session.scalar(
            insert(StripeEvent)
            .values(
                id=event["id"],
                type=event["type"],
                payload=event,
                stripe_created_at=datetime.fromtimestamp(int(event.get("created") or 0), UTC),
            )
            .on_conflict_do_nothing(index_elements=[StripeEvent.id])
            .returning(StripeEvent.id)
        )
        return inserted is not None

    async def event(self, event_id: str, *, lock: bool = False) -> StripeEvent | None:
        return await self.session.get(StripeEvent, event_id, with_for_update=lock)

    async def unprocessed_events(
        self, *, received_before: datetime, max_attempts: int, limit: int
    ) -> list[str]:
        """Oldest first: events not applied yet that failed fewer than ``max_attempts`` times."""
        rows = await self.session.scalars(
            select(StripeEvent.id)
            .where(
                StripeEvent.processed_at.is_(None),
                StripeEvent.received_at < received_before,
                StripeEvent.attempts < max_attempts,
            )
            .order_by(StripeEvent.received_at)
            .limit(limit)
        )
        return list(rows)
