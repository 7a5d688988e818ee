"""Runs on Postgres: starting, claiming and finishing a run.

Each write is one SQLAlchemy Core statement where it can be, a single round trip: the new
conversation, run and user message go in together through data-modifying CTEs, the claim
returns the conversation's history with the run, and a finished run's status, replies and
usage record commit in one statement after the conversation's lock. Through the ORM's unit of
work the same steps cost 3-4 ms of CPU each on our machines, against 1-2 ms here; the first
two sit in front of every first token, the last in every run's share of a worker's CPU
(docs/performance.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BindParameter,
    Boolean,
    Insert,
    Integer,
    String,
    Table,
    Text,
    Update,
    Uuid,
    bindparam,
    case,
    column,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.billing.repository import usage_of_finished_runs, usage_parameters
from switchboard.conversations.repository import next_position_query
from switchboard.models import Conversation, Message, Run, RunApproval
from switchboard.runs.schemas import Usage


def _table(model: type[Conversation | Run | Message | RunApproval]) -> Table:
    # Statements on the tables rather than the mapped classes skip the ORM's bulk layer.
    return model.metadata.tables[model.__tablename__]


_conversation, _run, _message = _table(Conversation), _table(Run), _table(Message)
_approval = _table(RunApproval)


@dataclass(frozen=True)
class NewRun:
    id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    agent: str
    message: str


@dataclass(frozen=True)
class ClaimedRun:
    id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    entry_agent: str
    created_at: datetime
    history: list[tuple[str, str]]
    """The conversation's latest messages, oldest first, as (role, content)."""
    stop: str | None = None
    """Set when a later chat stopped it (interrupt, rollback) before it started."""


@dataclass(frozen=True)
class Reply:
    message_id: uuid.UUID
    content: str
    agent: str
    incomplete: bool = False
    """Cut short by a cancel: the text the client was sent before it."""


# Bound parameters are named p_*: SQLAlchemy reserves the column names for its own.
_new_run = (
    insert(_run)
    .values(
        id=bindparam("p_run_id"),
        tenant_id=bindparam("p_tenant_id"),
        user_id=bindparam("p_user_id"),
        conversation_id=bindparam("p_conversation_id"),
        status="queued",
        entry_agent=bindparam("p_agent"),
        input_tokens=0,
        output_tokens=0,
        cached_input_tokens=0,
        attempt=0,
    )
    .cte("new_run")
)


def _user_message(position: int | BindParameter[int]) -> Insert:
    return (
        insert(_message)
        .values(
            id=bindparam("p_message_id"),
            conversation_id=bindparam("p_conversation_id"),
            position=position,
            role="user",
            content=bindparam("p_message"),
            incomplete=False,
            run_id=bindparam("p_run_id"),
        )
        .add_cte(_new_run)
    )


_START_IN_NEW_CONVERSATION = _user_message(0).add_cte(
    insert(_conversation)
    .values(
        id=bindparam("p_conversation_id"),
        tenant_id=bindparam("p_tenant_id"),
        user_id=bindparam("p_user_id"),
        title=bindparam("p_title"),
        updated_at=bindparam("p_now"),
    )
    .cte("new_conversation")
)

# At the next position, read after _TOUCH locked the conversation.
_START_IN_CONVERSATION = _user_message(bindparam("p_position", type_=Integer))

# The caller's own conversation: another user's or tenant's matches no row.
_OWNED_CONVERSATION = (
    _conversation.c.id == bindparam("p_conversation_id"),
    _conversation.c.tenant_id == bindparam("p_tenant_id"),
    _conversation.c.user_id == bindparam("p_user_id"),
)

# Locks the caller's conversation as a run's final write does (finish_succeeded), so a
# message and a reply never race for a position.
_TOUCH = (
    update(_conversation)
    .where(*_OWNED_CONVERSATION)
    .values(updated_at=bindparam("p_now"))
    .returning(_conversation.c.id)
)

_claimed = (
    update(_run)
    .where(
        _run.c.id == bindparam("p_run_id"),
        _run.c.status == "queued",
        _run.c.pending_message.is_(None),  # a run waiting for its turn is not started
    )
    .values(status="running", started_at=bindparam("p_now"), attempt=_run.c.attempt + 1)
    .returning(
        _run.c.id,
        _run.c.tenant_id,
        _run.c.user_id,
        _run.c.conversation_id,
        _run.c.entry_agent,
        _run.c.created_at,
        _run.c.stop,
    )
    .cte("claimed")
)
_history = (
    select(_message.c.role, _message.c.content, _message.c.position)
    .where(_message.c.conversation_id == _claimed.c.conversation_id)
    .order_by(_message.c.position.desc())
    .limit(bindparam("p_last"))
    .lateral("history")
)
_CLAIM = (
    select(_claimed, _history.c.role, _history.c.content)
    .outerjoin(_history, true())
    .order_by(_history.c.position)
)


_LOCK_CONVERSATION = select(_conversation.c.id).where(*_OWNED_CONVERSATION).with_for_update()
_LOCK_CONVERSATION_OF_RUN = (
    select(_conversation.c.id)
    .where(
        _conversation.c.id
        == select(_run.c.conversation_id)
        .where(_run.c.id == bindparam("p_run_id"))
        .scalar_subquery()
    )
    .with_for_update()
)


def _finish(**values: Any) -> Update:
    """Ends a run that has not ended; a run deleted or finished meanwhile is left alone."""
    return (
        update(_run)
        .where(_run.c.id == bindparam("p_run_id"), _run.c.status.in_(("queued", "running")))
        .values(finished_at=bindparam("p_now"), **values)
    )


_ended = (
    _finish(
        status=bindparam("p_status"),
        final_agent=bindparam("p_agent"),
        input_tokens=bindparam("p_input_tokens"),
        output_tokens=bindparam("p_output_tokens"),
        cached_input_tokens=bindparam("p_cached_input_tokens"),
    )
    .returning(
        _run.c.id,
        _run.c.tenant_id,
        _run.c.status,
        _run.c.input_tokens,
        _run.c.output_tokens,
        _run.c.cached_input_tokens,
    )
    .cte("ended")
)
# A succeeded run is metered even at 0 tokens (it counts as a run); a cancelled one only for
# the tokens it used before the cancel.
_billable = (
    select(_ended)
    .where(or_(_ended.c.status == "succeeded", _ended.c.input_tokens + _ended.c.output_tokens > 0))
    .cte("billable")
)
# One row per reply, numbered from 1 in the order the agents wrote them.
_replies = (
    func.unnest(
        bindparam("p_reply_ids", type_=ARRAY(Uuid)),
        bindparam("p_reply_contents", type_=ARRAY(Text)),
        bindparam("p_reply_agents", type_=ARRAY(String)),
        bindparam("p_reply_incomplete", type_=ARRAY(Boolean)),
    )
    .table_valued(
        column("id", Uuid),
        column("content", Text),
        column("agent", String),
        column("incomplete", Boolean),
        with_ordinality="n",
    )
    .render_derived()
)
_reply_messages = insert(_message).from_select(
    [
        "id",
        "conversation_id",
        "position",
        "role",
        "content",
        "agent",
        "incomplete",
        "run_id",
        "output_tokens",
    ],
    select(
        _replies.c.id,
        bindparam("p_conversation_id", type_=Uuid),
        next_position_query(bindparam("p_conversation_id")).scalar_subquery() + _replies.c.n - 1,
        literal("assistant"),
        _replies.c.content,
        _replies.c.agent,
        _replies.c.incomplete,
        _ended.c.id,
        # The run's output tokens are counted once, on its first reply.
        case((_replies.c.n == 1, bindparam("p_output_tokens")), else_=None),
    ).select_from(_ended.join(_replies, true())),
)
# Runs after _LOCK_CONVERSATION, in a statement of its own: under READ COMMITTED a statement
# reads from a snapshot taken when it starts, so a lock taken inside it (a CTE) would leave the
# next position read from before a message committed while it waited for the lock.
_FINISH_WITH_REPLIES = (
    select(func.count())
    .select_from(_ended)
    .add_cte(_reply_messages.cte("replies"), usage_of_finished_runs(_billable).cte("usage"))
)
_FINISH_FAILED = _finish(
    status="failed", error_code=bindparam("p_code"), error_message=bindparam("p_message")
).returning(_run.c.id)
# The sweep's: fails a run only while it is still in the status it was seen in.
_FAIL_IN_STATUS = (
    update(_run)
    .where(_run.c.id == bindparam("p_run_id"), _run.c.status == bindparam("p_status"))
    .values(
        status="failed",
        error_code=bindparam("p_code"),
        error_message=bindparam("p_message"),
        finished_at=bindparam("p_now"),
    )
    .returning(_run.c.id)
)


@dataclass(frozen=True)
class PendingApproval:
    id: uuid.UUID
    call_id: str
    tool: str
    arguments: str
    agent: str


@dataclass(frozen=True)
class Decision:
    approved: bool
    reason: str | None


@dataclass(frozen=True)
class ApprovalRow:
    id: uuid.UUID
    decided: bool


_undecided = (
    select(_approval.c.id)
    .where(_approval.c.run_id == _run.c.id, _approval.c.approved.is_(None))
    .exists()
)
# Takes a waiting run back to running: once every approval it waits on is decided, or to end
# it (a cancel, p_force, or a later chat's stop) whatever is still undecided.
_CLAIM_PAUSED = (
    update(_run)
    .where(
        _run.c.id == bindparam("p_run_id"),
        _run.c.status == "requires_action",
        or_(bindparam("p_force", type_=Boolean), _run.c.stop.is_not(None), ~_undecided),
    )
    .values(status="running", attempt=_run.c.attempt + 1)
    .returning(
        _run.c.id,
        _run.c.tenant_id,
        _run.c.user_id,
        _run.c.conversation_id,
        _run.c.entry_agent,
        _run.c.created_at,
        _run.c.stop,
        _run.c.paused,
    )
)


class RunRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, run_id: uuid.UUID) -> Run | None:
        return await self.session.get(Run, run_id)

    async def owned(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, run_id: uuid.UUID
    ) -> Run | None:
        """The run if it is the caller's own."""
        query = select(Run).where(
            Run.id == run_id, Run.tenant_id == tenant_id, Run.user_id == user_id
        )
        return (await self.session.scalars(query)).one_or_none()

    async def start_in_new_conversation(self, run: NewRun, *, title: str, now: datetime) -> None:
        await self.session.execute(
            _START_IN_NEW_CONVERSATION,
            {**_params(run), "p_title": title, "p_now": now},
        )

    async def start_in_conversation(self, run: NewRun, *, now: datetime) -> bool:
        """False if the conversation is not the caller's (or gone); nothing is written then.
        Holds the conversation's lock until the transaction ends."""
        held = await self.lock_conversation(run, now=now)
        if held is None:
            return False
        await self.add_to_conversation(run, position=held)
        return True

    async def lock_conversation(self, run: NewRun, *, now: datetime) -> int | None:
        """Locks the caller's conversation of ``run`` until the transaction ends (touching its
        ``updated_at``) and counts its messages; None if it is not the caller's (or gone).

        The count is the next position (positions run from 0 without gaps), read in a
        statement of its own: one that waited for the lock would read from before it."""
        touched = await self.session.scalar(
            _TOUCH,
            {
                "p_conversation_id": run.conversation_id,
                "p_tenant_id": run.tenant_id,
                "p_user_id": run.user_id,
                "p_now": now,
            },
        )
        if touched is None:
            return None
        return int(await self.session.scalar(next_position_query(run.conversation_id)) or 0)

    async def add_to_conversation(self, run: NewRun, *, position: int) -> None:
        """The run and its message at ``position``, the count ``lock_conversation`` read."""
        await self.session.execute(_START_IN_CONVERSATION, {**_params(run), "p_position": position})

    async def add_waiting(self, run: NewRun) -> None:
        """The run, waiting for its turn in the conversation ``lock_conversation`` holds: its
        message joins the conversation when the turn comes (``ConversationTurns``)."""
        await self.session.execute(
            insert(_run).values(
                id=run.id,
                tenant_id=run.tenant_id,
                user_id=run.user_id,
                conversation_id=run.conversation_id,
                status="queued",
                entry_agent=run.agent,
                input_tokens=0,
                output_tokens=0,
                cached_input_tokens=0,
                attempt=0,
                pending_message=run.message,
            )
        )

    async def lock_conversation_of(self, run_id: uuid.UUID) -> uuid.UUID | None:
        """Locks the conversation of ``run_id`` until the transaction ends; its id, or None if
        the run is gone."""
        return await self.session.scalar(_LOCK_CONVERSATION_OF_RUN, {"p_run_id": run_id})

    async def claim(self, run_id: uuid.UUID, *, now: datetime, history: int) -> ClaimedRun | None:
        """Moves a queued run to running and reads the conversation's last ``history``
        messages with it; None if the run is not queued (taken, finished or deleted)."""
        rows = (
            await self.session.execute(
                _CLAIM, {"p_run_id": run_id, "p_now": now, "p_last": history}
            )
        ).all()
        if not rows:
            return None
        first = rows[0]
        return ClaimedRun(
            id=first.id,
            tenant_id=first.tenant_id,
            user_id=first.user_id,
            conversation_id=first.conversation_id,
            entry_agent=first.entry_agent,
            created_at=first.created_at,
            history=[(row.role, row.content) for row in rows if row.role is not None],
            stop=first.stop,
        )

    async def finish_succeeded(
        self,
        run: ClaimedRun,
        *,
        agent: str,
        usage: Usage,
        replies: list[Reply],
        now: datetime,
    ) -> bool:
        """Ends the run as succeeded with its replies at the conversation's next positions
        and its usage record; False (nothing written) if the run or its conversation is gone
        or the run already ended."""
        return await self._finish_with_replies(
            run, "succeeded", agent=agent, usage=usage, replies=replies, now=now
        )

    async def _finish_with_replies(
        self,
        run: ClaimedRun,
        status: str,
        *,
        agent: str,
        usage: Usage,
        replies: list[Reply],
        now: datetime,
    ) -> bool:
        """Holds the conversation's lock until the transaction ends, as starting a run in it
        does, so a reply and a new message never race for a position."""
        locked = await self.session.scalar(
            _LOCK_CONVERSATION,
            {
                "p_conversation_id": run.conversation_id,
                "p_tenant_id": run.tenant_id,
                "p_user_id": run.user_id,
            },
        )
        if locked is None:
            return False  # deleted, with this run
        finished = await self.session.scalar(
            _FINISH_WITH_REPLIES,
            {
                "p_run_id": run.id,
                "p_status": status,
                "p_conversation_id": run.conversation_id,
                "p_now": now,
                "p_agent": agent,
                "p_input_tokens": usage.input_tokens,
                "p_output_tokens": usage.output_tokens,
                "p_cached_input_tokens": usage.cached_input_tokens,
                "p_reply_ids": [reply.message_id for reply in replies],
                "p_reply_contents": [reply.content for reply in replies],
                "p_reply_agents": [reply.agent for reply in replies],
                "p_reply_incomplete": [reply.incomplete for reply in replies],
                **usage_parameters(at=now),
            },
        )
        return bool(finished)

    async def running_started_before(self, moment: datetime, *, limit: int) -> list[uuid.UUID]:
        """Runs still running that started before ``moment``, oldest first."""
        query = (
            select(_run.c.id)
            .where(_run.c.status == "running", _run.c.started_at < moment)
            .order_by(_run.c.started_at)
            .limit(limit)
        )
        return list(await self.session.scalars(query))

    async def queued_created_before(self, moment: datetime, *, limit: int) -> list[uuid.UUID]:
        """Runs queued (a run that waited for its turn: from when it came) before ``moment``,
        oldest first. Runs still waiting for their turn are not queued yet."""
        queued_at = func.coalesce(_run.c.queued_at, _run.c.created_at)
        query = (
            select(_run.c.id)
            .where(_run.c.status == "queued", _run.c.pending_message.is_(None), queued_at < moment)
            .order_by(queued_at)
            .limit(limit)
        )
        return list(await self.session.scalars(query))

    async def statuses(self, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The status of each of these runs that exists."""
        if not run_ids:
            return {}
        query = select(_run.c.id, _run.c.status).where(_run.c.id.in_(run_ids))
        return {row.id: row.status for row in await self.session.execute(query)}

    async def fail_in_status(
        self, run_id: uuid.UUID, *, status: str, code: str, message: str, now: datetime
    ) -> bool:
        """Fails the run if it is still ``status``; False if it moved on or is gone."""
        failed = await self.session.scalar(
            _FAIL_IN_STATUS,
            {
                "p_run_id": run_id,
                "p_status": status,
                "p_code": code,
                "p_message": message,
                "p_now": now,
            },
        )
        return failed is not None

    async def pause(
        self, run_id: uuid.UUID, *, paused: str, approvals: list[PendingApproval], now: datetime
    ) -> bool:
        """Moves a running run to requires_action with its serialized state and the tool calls
        it waits on; False (nothing written) if it is no longer running or gone."""
        held = await self.session.scalar(
            update(_run)
            .where(_run.c.id == run_id, _run.c.status == "running")
            .values(status="requires_action", paused=paused, paused_at=now)
            .returning(_run.c.id)
        )
        if held is None:
            return False
        await self.session.execute(
            insert(_approval),
            [
                {
                    "id": approval.id,
                    "run_id": run_id,
                    "call_id": approval.call_id,
                    "tool": approval.tool,
                    "arguments": approval.arguments,
                    "agent": approval.agent,
                }
                for approval in approvals
            ],
        )
        return True

    async def claim_paused(
        self, run_id: uuid.UUID, *, force: bool
    ) -> tuple[ClaimedRun, str, dict[str, Decision]] | None:
        """Takes a waiting run back to running when every approval is decided (or ``force``,
        or a later chat stopped it): the run, its serialized state and the decisions by call
        id; None if it is not waiting, or still waits on a decision."""
        row = (
            await self.session.execute(_CLAIM_PAUSED, {"p_run_id": run_id, "p_force": force})
        ).first()
        if row is None or row.paused is None:
            return None
        decisions = await self.session.execute(
            select(_approval.c.call_id, _approval.c.approved, _approval.c.reason).where(
                _approval.c.run_id == run_id, _approval.c.approved.is_not(None)
            )
        )
        claimed = ClaimedRun(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            conversation_id=row.conversation_id,
            entry_agent=row.entry_agent,
            created_at=row.created_at,
            history=[],
            stop=row.stop,
        )
        return (
            claimed,
            row.paused,
            {d.call_id: Decision(bool(d.approved), d.reason) for d in decisions},
        )

    async def lock_owned(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, run_id: uuid.UUID
    ) -> tuple[str, datetime | None] | None:
        """Locks the caller's own run until the transaction ends: its status and when it
        paused; None if it is not the caller's. Decisions on one run take turns under it."""
        row = (
            await self.session.execute(
                select(_run.c.status, _run.c.paused_at)
                .where(
                    _run.c.id == run_id, _run.c.tenant_id == tenant_id, _run.c.user_id == user_id
                )
                .with_for_update()
            )
        ).first()
        return None if row is None else (row.status, row.paused_at)

    async def approvals(self, run_id: uuid.UUID) -> dict[uuid.UUID, ApprovalRow]:
        rows = await self.session.execute(
            select(_approval.c.id, _approval.c.approved.is_not(None).label("decided")).where(
                _approval.c.run_id == run_id
            )
        )
        return {row.id: ApprovalRow(row.id, row.decided) for row in rows}

    async def decide(
        self, approval_id: uuid.UUID, *, approved: bool, reason: str | None, now: datetime
    ) -> None:
        await self.session.execute(
            update(_approval)
            .where(_approval.c.id == approval_id, _approval.c.approved.is_(None))
            .values(approved=approved, reason=reason, decided_at=now)
        )

    async def waiting_paused_before(self, moment: datetime, *, limit: int) -> list[uuid.UUID]:
        """Runs waiting for approvals since before ``moment``, oldest first."""
        query = (
            select(_run.c.id)
            .where(_run.c.status == "requires_action", _run.c.paused_at < moment)
            .order_by(_run.c.paused_at)
            .limit(limit)
        )
        return list(await self.session.scalars(query))

    async def count_waiting(self) -> int:
        query = select(func.count()).select_from(_run).where(_run.c.status == "requires_action")
        return int(await self.session.scalar(query) or 0)

    async def finish_failed(
        self, run_id: uuid.UUID, *, code: str, message: str, now: datetime
    ) -> bool:
        """False if the run is gone or already ended."""
        finished = await self.session.scalar(
            _FINISH_FAILED, {"p_run_id": run_id, "p_now": now, "p_code": code, "p_message": message}
        )
        return finished is not None

    async def finish_cancelled(
        self,
        run: ClaimedRun,
        *,
        agent: str,
        usage: Usage,
        replies: list[Reply],
        now: datetime,
    ) -> bool:
        """Ends the run as cancelled with what it said before the cancel (the last reply
        ``incomplete`` if cut short) and, if it used any tokens, their usage record; False
        (nothing written) if the run or its conversation is gone or the run already ended."""
        return await self._finish_with_replies(
            run, "cancelled", agent=agent, usage=usage, replies=replies, now=now
        )


def _params(run: NewRun) -> dict[str, object]:
    return {
        "p_run_id": run.id,
        "p_tenant_id": run.tenant_id,
        "p_user_id": run.user_id,
        "p_conversation_id": run.conversation_id,
        "p_agent": run.agent,
        "p_message_id": uuid.uuid4(),
        "p_message": run.message,
    }
