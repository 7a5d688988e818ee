"""The offline model under the real Runner: echoed words, handoffs, tools, usage and pacing."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from agents import Runner
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.stream_events import (
    AgentUpdatedStreamEvent,
    RawResponsesStreamEvent,
    RunItemStreamEvent,
)
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from switchboard.agents.context import AgentContext
from switchboard.agents.registry import AgentRegistry
from tests.agents.conftest import TENANT, USER, InMemoryBackend, Outcome, offline_run_config

ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")


def deltas(outcome: Outcome) -> list[str]:
    return [
        event.data.delta
        for event in outcome.events
        if isinstance(event, RawResponsesStreamEvent)
        and isinstance(event.data, ResponseTextDeltaEvent)
    ]


def raw_types(outcome: Outcome) -> list[str]:
    return [e.data.type for e in outcome.events if isinstance(e, RawResponsesStreamEvent)]


def item_events(outcome: Outcome, name: str) -> list[RunItemStreamEvent]:
    return [e for e in outcome.events if isinstance(e, RunItemStreamEvent) and e.name == name]


def called_tools(outcome: Outcome) -> list[str]:
    names = []
    for event in item_events(outcome, "tool_called"):
        assert isinstance(event.item, ToolCallItem)
        names.append(getattr(event.item.raw_item, "name", ""))
    return names


def agent_updates(outcome: Outcome) -> list[str]:
    return [e.new_agent.name for e in outcome.events if isinstance(e, AgentUpdatedStreamEvent)]


async def test_reply_streams_the_words_of_the_message(run: Any) -> None:
    outcome = await run("triage", "hello there world")

    assert deltas(outcome) == ["hello ", "there ", "world"]
    assert "".join(deltas(outcome)) == "hello there world"
    assert outcome.final_output == "hello there world"
    assert outcome.last_agent == "triage"
    assert (outcome.input_tokens, outcome.output_tokens, outcome.requests) == (3, 3, 1)
    assert agent_updates(outcome) == ["triage"]
    assert len(item_events(outcome, "message_output_created")) == 1


async def test_stream_follows_the_responses_event_order(run: Any) -> None:
    outcome = await run("triage", "one two")

    assert raw_types(outcome) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    raw = [e.data for e in outcome.events if isinstance(e, RawResponsesStreamEvent)]
    assert [event.sequence_number for event in raw] == list(range(len(raw)))
    completed = raw[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 2


async def test_punctuation_and_spacing_are_kept_per_word(run: Any) -> None:
    outcome = await run("triage", "  Hi,   how are\tyou?  ")

    assert deltas(outcome) == ["Hi, ", "how ", "are ", "you?"]
    assert outcome.final_output == "Hi, how are you?"


async def test_billing_words_hand_off_from_triage_to_billing(run: Any) -> None:
    outcome = await run("triage", "please check my invoice")

    assert agent_updates(outcome) == ["triage", "billing"]
    assert len(item_events(outcome, "handoff_occured")) == 1
    assert outcome.last_agent == "billing"
    assert outcome.final_output == "please check my invoice"
    assert "".join(deltas(outcome)) == "please check my invoice"
    assert outcome.requests == 2


async def test_billing_keyword_is_case_insensitive(run: Any) -> None:
    outcome = await run("triage", "My BILLING address changed")

    assert outcome.last_agent == "billing"


async def test_agents_without_the_handoff_just_reply(run: Any) -> None:
    outcome = await run("support", "where is my invoice")

    assert agent_updates(outcome) == ["support"]
    assert outcome.final_output == "where is my invoice"


async def test_time_keyword_calls_current_time(run: Any) -> None:
    outcome = await run("triage", "what time is it")

    assert called_tools(outcome) == ["current_time"]
    [output] = item_events(outcome, "tool_output")
    assert isinstance(output.item, ToolCallOutputItem)
    assert ISO_UTC.fullmatch(str(output.item.output))
    assert outcome.final_output.startswith("what time is it ")
    assert ISO_UTC.search(outcome.final_output)
    assert "".join(deltas(outcome)) == outcome.final_output
    assert outcome.requests == 2


async def test_search_uses_the_callers_identity_from_the_context(
    run: Any, backend: InMemoryBackend
) -> None:
    outcome = await run("support", "search for invoices")

    assert called_tools(outcome) == ["search_conversations"]
    [call] = item_events(outcome, "tool_called")
    assert isinstance(call.item, ToolCallItem)
    arguments = json.loads(getattr(call.item.raw_item, "arguments", ""))
    assert arguments == {"query": "search for invoices"}
    assert backend.searches == [
        {"tenant_id": TENANT, "user_id": USER, "query": "search for invoices", "limit": 5}
    ]
    assert outcome.final_output.startswith("search for invoices ")
    assert "conv-9" in outcome.final_output


async def test_usage_keyword_calls_usage_summary_on_billing(
    run: Any, backend: InMemoryBackend
) -> None:
    outcome = await run("billing", "show my usage")

    assert called_tools(outcome) == ["usage_summary"]
    assert backend.usage_requests == [TENANT]
    [output] = item_events(outcome, "tool_output")
    assert json.loads(str(output.item.output)) == {
        "period_start": "2025-03-01T00:00:00+00:00",
        "period_end": "2025-04-01T00:00:00+00:00",
        "runs": 7,
        "input_tokens": 1200,
        "output_tokens": 340,
    }
    assert outcome.final_output.startswith("show my usage ")


async def test_tools_the_agent_lacks_are_not_called(run: Any, backend: InMemoryBackend) -> None:
    outcome = await run("triage", "search my usage")

    assert called_tools(outcome) == []
    assert backend.searches == []
    assert outcome.final_output == "search my usage"


async def test_each_tool_is_called_once_then_the_reply_has_every_output(
    run: Any, backend: InMemoryBackend
) -> None:
    outcome = await run("triage", "billing usage at what time")

    assert agent_updates(outcome) == ["triage", "billing"]
    assert called_tools(outcome) == ["current_time", "usage_summary"]
    assert backend.usage_requests == [TENANT]
    assert outcome.final_output.startswith("billing usage at what time ")
    assert ISO_UTC.search(outcome.final_output)
    assert '"runs": 7' in outcome.final_output
    assert outcome.requests == 4


async def test_a_new_message_in_the_same_conversation_may_call_the_tool_again(
    registry: AgentRegistry, context: AgentContext
) -> None:
    config = offline_run_config()
    first = await Runner.run(
        registry.agent("triage"), "what time is it", context=context, run_config=config
    )
    history = [*first.to_input_list(), {"role": "user", "content": "and the time now"}]
    second = await Runner.run(registry.agent("triage"), history, context=context, run_config=config)

    calls = [i for i in second.new_items if isinstance(i, ToolCallItem)]
    assert len(calls) == 1
    assert second.final_output.startswith("and the time now ")


async def test_non_streaming_run_gives_the_same_reply_and_usage(
    registry: AgentRegistry, context: AgentContext
) -> None:
    result = await Runner.run(
        registry.agent("triage"),
        "hello there world",
        context=context,
        run_config=offline_run_config(),
    )

    assert result.final_output == "hello there world"
    usage = result.context_wrapper.usage
    assert (usage.input_tokens, usage.output_tokens) == (3, 3)


async def test_token_delay_paces_each_word(run: Any) -> None:
    started = time.monotonic()
    outcome = await run("triage", "one two three four five", token_delay_ms=20)
    elapsed = time.monotonic() - started

    assert len(deltas(outcome)) == 5
    assert elapsed >= 0.1


async def test_an_empty_message_gets_an_empty_reply(run: Any) -> None:
    outcome = await run("triage", "   ")

    assert deltas(outcome) == []
    assert outcome.final_output == ""
    assert (outcome.input_tokens, outcome.output_tokens) == (0, 0)
