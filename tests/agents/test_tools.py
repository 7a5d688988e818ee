"""The tool registry: bundles from metadata, and schemas that leave identity to the context;
the billing tool's answer on Postgres."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from agents import FunctionTool, RunContextWrapper
from httpx import AsyncClient

from switchboard.agents.context import AgentContext
from switchboard.agents.errors import AgentConfigError
from switchboard.agents.tools import (
    TOOL_SPECS,
    ToolRegistry,
    ToolSpec,
    current_time,
    usage_summary,
)
from switchboard.kit.db import SessionMaker
from switchboard.models import Conversation, Run, User
from switchboard.runs.backend import DatabaseToolBackend
from tests.billing.conftest import new_tenant, record_usage
from tests.support.members import NewMember


def test_bundles_follow_the_metadata() -> None:
    tools = ToolRegistry(TOOL_SPECS)

    assert tools.bundles == {"triage", "support", "billing"}
    assert tools.names("triage") == ["current_time"]
    assert tools.names("support") == ["current_time", "search_conversations"]
    assert tools.names("billing") == ["current_time", "usage_summary", "cancel_subscription"]
    assert [tool.name for tool in tools.bundle("billing")] == tools.names("billing")


def test_tools_carry_the_spec_name_and_description() -> None:
    tools = ToolRegistry(TOOL_SPECS)

    for spec in TOOL_SPECS:
        [tool] = [t for t in tools.bundle(spec.bundles[0]) if t.name == spec.name]
        assert isinstance(tool, FunctionTool)
        assert tool.description == spec.description


def test_search_takes_only_a_query_from_the_model() -> None:
    [tool] = [t for t in ToolRegistry(TOOL_SPECS).bundle("support") if t.name != "current_time"]
    assert isinstance(tool, FunctionTool)

    assert tool.params_json_schema["required"] == ["query"]
    assert list(tool.params_json_schema["properties"]) == ["query"]


def test_usage_and_time_take_no_arguments() -> None:
    for tool in ToolRegistry(TOOL_SPECS).bundle("billing"):
        assert isinstance(tool, FunctionTool)
        assert tool.params_json_schema["properties"] == {}


def test_a_tool_name_is_registered_once() -> None:
    spec = ToolSpec("clock", "The time.", ("triage",), current_time)

    with pytest.raises(AgentConfigError, match="twice"):
        ToolRegistry([spec, spec])


def test_a_tool_needs_a_bundle() -> None:
    with pytest.raises(AgentConfigError, match="no bundle"):
        ToolRegistry([ToolSpec("clock", "The time.", (), current_time)])


def test_unknown_bundle_is_refused() -> None:
    with pytest.raises(AgentConfigError, match="no tool bundle named 'sales'"):
        ToolRegistry(TOOL_SPECS).bundle("sales")


async def _failed_run(sessionmaker: SessionMaker, tenant_id: uuid.UUID) -> uuid.UUID:
    """A run of this month that failed after using tokens: billing meters no failed run."""
    async with sessionmaker() as session, session.begin():
        user = User(email=f"{uuid.uuid4().hex}@example.com", password_hash="x", pepper_version=1)
        session.add(user)
        await session.flush()
        conversation = Conversation(tenant_id=tenant_id, user_id=user.id, title="c")
        session.add(conversation)
        await session.flush()
        session.add(
            Run(
                tenant_id=tenant_id,
                user_id=user.id,
                conversation_id=conversation.id,
                status="failed",
                entry_agent="billing",
                input_tokens=1000,
                output_tokens=1000,
            )
        )
    return user.id


async def test_the_usage_tool_answers_what_the_usage_endpoint_answers(
    client: AsyncClient,
    sessionmaker: SessionMaker,
    new_member: NewMember,
) -> None:
    tenant, other = await new_tenant(sessionmaker), await new_tenant(sessionmaker)
    now = datetime.now(UTC)
    last_month = now.replace(day=1) - timedelta(days=1)
    async with sessionmaker() as session, session.begin():
        for owner, (input_tokens, output_tokens), at in (
            (tenant, (10, 20), now),
            (tenant, (1, 2), now),
            (tenant, (300, 300), last_month),
            (other, (500, 500), now),
        ):
            await record_usage(
                session,
                tenant_id=owner,
                run_id=uuid.uuid4(),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                at=at,
            )
    user = await _failed_run(sessionmaker, tenant)
    context = AgentContext(
        tenant_id=str(tenant),
        user_id=str(user),
        conversation_id=str(uuid.uuid4()),
        backend=DatabaseToolBackend(sessionmaker),
    )

    told = json.loads(await usage_summary(RunContextWrapper(context)))
    member = await new_member(tenant_id=tenant, role="member")
    response = await client.get("/api/v1/billing/usage", headers=member.headers)

    assert response.status_code == 200
    served = response.json()
    for key in ("runs", "input_tokens", "output_tokens"):
        assert told[key] == served[key]
    for key in ("period_start", "period_end"):
        assert datetime.fromisoformat(told[key]) == datetime.fromisoformat(served[key])
    assert (told["runs"], told["input_tokens"], told["output_tokens"]) == (2, 11, 22)
    assert datetime.fromisoformat(told["period_start"]) == now.replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
