"""The agents' tools read the caller's own data through this, on Postgres."""

from __future__ import annotations

import uuid

import structlog

from switchboard.agents.context import ConversationHit, UsageSummary
from switchboard.billing.errors import SubscriptionNotFoundError
from switchboard.billing.service import BILLING_MANAGER_ROLES, BillingService
from switchboard.conversations.repository import ConversationRepository
from switchboard.identity.repository import IdentityRepository
from switchboard.kit.db import SessionMaker
from switchboard.kit.jobs import JobBuffer, JobSender

log = structlog.get_logger("switchboard.runs")

SNIPPET_CHARS = 160


class DatabaseToolBackend:
    def __init__(self, sessionmaker: SessionMaker, jobs: JobSender | None = None) -> None:
        """``jobs`` sends the Stripe sync of a subscription a tool changed."""
        self._sessionmaker = sessionmaker
        self._jobs = jobs

    async def search_conversations(
        self, *, tenant_id: str, user_id: str, query: str, limit: int
    ) -> list[ConversationHit]:
        async with self._sessionmaker() as session:
            rows = await ConversationRepository(session).search(
                uuid.UUID(tenant_id), uuid.UUID(user_id), query, limit=limit
            )
        return [
            ConversationHit(
                conversation_id=str(conversation.id),
                title=conversation.title,
                snippet=message.content[:SNIPPET_CHARS],
            )
            for conversation, message in rows
        ]

    async def usage_summary(self, *, tenant_id: str) -> UsageSummary:
        """This month's usage as billing counts it: the same answer as the usage endpoint."""
        async with self._sessionmaker() as session:
            usage = await BillingService(session).usage(uuid.UUID(tenant_id))
        return UsageSummary(
            period_start=usage.period_start,
            period_end=usage.period_end,
            runs=usage.runs,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )

    async def cancel_subscription(self, *, tenant_id: str, user_id: str) -> str:
        """Cancels at period end through the billing service, as ``POST /billing/subscription/
        cancel`` does, if the user's role (read now) may change billing; a refusal is an
        answer for the agent, not an error."""
        jobs = JobBuffer()
        tenant, user = uuid.UUID(tenant_id), uuid.UUID(user_id)
        async with self._sessionmaker() as session, session.begin():
            role = await IdentityRepository(session).active_role(user, tenant)
            if role not in BILLING_MANAGER_ROLES:
                log.info("runs.tool_refused", tool="cancel_subscription", user_id=user_id)
                return (
                    "Not cancelled: only an owner, admin or billing manager of the organisation"
                    f" may cancel its subscription, and your role is {role or 'none'}."
                )
            try:
                subscription = await BillingService(session).cancel(tenant, jobs)
            except SubscriptionNotFoundError:
                return "Not cancelled: the organisation has no subscription."
        if self._jobs is not None:
            await jobs.flush(self._jobs)
        end = subscription.current_period_end
        when = f"on {end.date().isoformat()}" if end is not None else "at the end of the period"
        return f"Cancelled: the subscription ends {when}."
