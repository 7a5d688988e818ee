"""An approval outlives the runs worker that paused its run: the worker is killed with SIGKILL
while the run waits, a new one starts, and the decision resumes the run there."""

from __future__ import annotations

import uuid
from pathlib import Path

from httpx import AsyncClient

from switchboard.kit.db import SessionMaker
from switchboard.models import Run, Subscription
from tests.e2e.conftest import sign_up
from tests.support.sse import Frame, collect, frames
from tests.support.worker import runs_worker_process


async def test_a_decision_resumes_the_run_on_a_worker_started_after_the_pause(
    api: AsyncClient, committed: SessionMaker, tmp_path: Path
) -> None:
    user = await sign_up(api)
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    with runs_worker_process(tmp_path / "first") as first:
        accepted = await api.post(
            "/api/v1/chat", json={"message": "please cancel my subscription"}, headers=user
        )
        run_id = accepted.json()["run_id"]
        async with committed() as session:
            run = await session.get(Run, uuid.UUID(run_id))
            assert run is not None
            session.add(
                Subscription(tenant_id=run.tenant_id, plan_code="team", seats=1, status="active")
            )
            await session.commit()
        live: list[Frame] = []
        url = f"/api/v1/runs/{run_id}/stream"
        async with api.stream("GET", url, headers=user) as response:
            async for frame in frames(response):
                live.append(frame)
                if frame.event == "run.requires_action":
                    break
        first.process.kill()  # SIGKILL: the run waits with no worker at all
        first.process.wait()
    assert "Task runs.resume[" not in first.log()

    with runs_worker_process(tmp_path / "second") as second:
        approval = live[-1].data["approvals"][0]
        answered = await api.post(
            f"/api/v1/runs/{run_id}/approvals",
            json={"decisions": [{"id": approval["id"], "approve": True}]},
            headers=user,
        )
        assert answered.status_code == 202, answered.text
        headers = {**user, "Last-Event-ID": str(live[-1].id)}
        async with api.stream("GET", url, headers=headers) as response:
            rest = await collect(response)
        assert "Task runs.resume[" in second.log()

    assert rest[0].event == "tool.output"
    assert rest[0].data["output"].startswith("Cancelled:")
    assert rest[-1].event == "run.completed"
    every = live + rest
    assert [frame.id for frame in every] == list(range(1, len(every) + 1))
