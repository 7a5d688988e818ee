"""The agents route: every registered agent, for a signed-in caller."""

from __future__ import annotations

from httpx import AsyncClient

from api.main import create_app
from switchboard.agents.settings import OpenAISettings
from switchboard.kit.db import SessionMaker
from switchboard.settings import Settings
from tests.support.app import in_test_transaction
from tests.support.members import NewMember


async def test_every_agent_is_listed_with_its_tools_and_handoffs(
    client: AsyncClient, new_member: NewMember
) -> None:
    alice = await new_member(role="member")

    response = await client.get("/api/v1/agents", headers=alice.headers)
    anonymous = await client.get("/api/v1/agents")

    assert response.status_code == 200
    agents = {agent["name"]: agent for agent in response.json()}
    assert "triage" in agents
    assert agents["triage"]["handoffs"]
    assert all(set(agent["handoffs"]) <= set(agents) for agent in agents.values())
    assert anonymous.status_code == 401


async def test_each_agent_shows_the_model_it_runs_on(
    client: AsyncClient, new_member: NewMember
) -> None:
    alice = await new_member(role="member")

    response = await client.get("/api/v1/agents", headers=alice.headers)

    assert {agent["name"]: (agent["model"], agent["provider"]) for agent in response.json()} == {
        "triage": ("gpt-4.1-mini", "offline"),
        "billing": ("gpt-4.1", "offline"),
        "support": ("gpt-4.1", "offline"),
    }


async def test_a_per_agent_model_shows_through_the_api(
    settings: Settings, sessionmaker: SessionMaker, new_member: NewMember
) -> None:
    openai = OpenAISettings(
        model="small-model", strong_model="large-model", agent_models={"support": "support-model"}
    )
    configured = settings.model_copy(update={"openai": openai})
    async with in_test_transaction(create_app(configured), sessionmaker) as client:
        alice = await new_member(role="member")

        response = await client.get("/api/v1/agents", headers=alice.headers)

    assert response.status_code == 200
    assert {agent["name"]: agent["model"] for agent in response.json()} == {
        "triage": "small-model",
        "billing": "large-model",
        "support": "support-model",
    }
