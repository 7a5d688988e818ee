"""A tenant on a plan of its own, with the limits a test wants."""

from __future__ import annotations

import uuid

from switchboard.kit.db import SessionMaker
from switchboard.models import Plan, Subscription


async def put_on_plan(
    sessionmaker: SessionMaker,
    tenant_id: uuid.UUID,
    *,
    runs_per_minute: int | None = None,
    concurrent_runs: int | None = None,
    monthly_tokens: int | None = None,
    open_streams_per_user: int | None = None,
) -> str:
    """A new plan with these limits (None: unlimited) and a live subscription to it."""
    code = f"lim-{uuid.uuid4().hex[:10]}"
    async with sessionmaker() as session, session.begin():
        session.add(
            Plan(
                code=code,
                name="Limits test",
                seat_price_cents=0,
                included_tokens=0,
                max_seats=None,
                runs_per_minute=runs_per_minute,
                concurrent_runs=concurrent_runs,
                monthly_tokens=monthly_tokens,
                open_streams_per_user=open_streams_per_user,
            )
        )
        await session.flush()
        session.add(Subscription(tenant_id=tenant_id, plan_code=code, seats=1, status="active"))
    return code
