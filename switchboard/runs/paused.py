"""A run waiting for tool approvals, as stored in Postgres, and how it is taken up again.

The Agents SDK serializes its own state (``RunState``); the run keeps beside it what it had
said, used and numbered before the pause, so any worker can continue it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from agents import RunContextWrapper, RunState

from switchboard.agents.context import AgentContext
from switchboard.runs.repository import Decision, Reply
from switchboard.runs.schemas import Usage

# What the agent reads for a tool call a person rejected without giving a reason.
REJECTED = "The user did not approve this tool call."


@dataclass(frozen=True)
class Paused:
    """A waiting run as stored in ``run.paused``: the SDK's serialized state with what the run
    had said, used and numbered before the pause, and the decisions taken on it."""

    state: str
    agent: str
    last: int
    replies: list[Reply]
    usage: Usage
    tool_names: dict[str, str]
    decisions: dict[str, Decision] = field(default_factory=dict)

    def dump(self) -> str:
        return json.dumps(
            {
                "state": self.state,
                "agent": self.agent,
                "last": self.last,
                "replies": [
                    [str(reply.message_id), reply.content, reply.agent] for reply in self.replies
                ],
                "usage": self.usage.model_dump(),
                "tool_names": self.tool_names,
            }
        )

    @classmethod
    def load(cls, raw: str, decisions: dict[str, Decision]) -> Paused:
        data = json.loads(raw)
        return cls(
            state=data["state"],
            agent=data["agent"],
            last=int(data["last"]),
            replies=[Reply(uuid.UUID(i), content, agent) for i, content, agent in data["replies"]],
            usage=Usage.model_validate(data["usage"]),
            tool_names=dict(data["tool_names"]),
            decisions=decisions,
        )


def context_ids(context: Any) -> dict[str, str]:
    """What of the run context is stored with a paused run: who asks, never the backend,
    which the resuming worker supplies."""
    return {
        "tenant_id": context.tenant_id,
        "user_id": context.user_id,
        "conversation_id": context.conversation_id,
    }


async def decided_state(agent: Any, paused: Paused, context: AgentContext) -> RunState[Any, Any]:
    """The stored state with each call approved or rejected as decided; a rejected call
    returns the refusal (the reason, if given) to the agent."""
    state = await RunState.from_string(
        agent, paused.state, context_override=RunContextWrapper(context)
    )
    for item in state.get_interruptions():
        decision = paused.decisions.get(str(item.call_id))
        if decision is None:
            continue  # undecided: the SDK asks again, and the run pauses again
        if decision.approved:
            state.approve(item)
        else:
            refusal = f"{REJECTED} Reason: {decision.reason}" if decision.reason else REJECTED
            state.reject(item, rejection_message=refusal)
    return state
