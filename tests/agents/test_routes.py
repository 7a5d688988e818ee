"""The agents route: every registered agent, for a signed-in caller."""

from __future__ import annotations

from httpx import AsyncClient

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
