"""The tool registry: bundles from metadata, and schemas that leave identity to the context."""

from __future__ import annotations

import pytest
from agents import FunctionTool

from switchboard.agents.errors import AgentConfigError
from switchboard.agents.tools import TOOL_SPECS, ToolRegistry, ToolSpec, current_time


def test_bundles_follow_the_metadata() -> None:
    tools = ToolRegistry(TOOL_SPECS)

    assert tools.bundles == {"triage", "support", "billing"}
    assert tools.names("triage") == ["current_time"]
    assert tools.names("support") == ["current_time", "search_conversations"]
    assert tools.names("billing") == ["current_time", "usage_summary"]
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
