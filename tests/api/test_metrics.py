from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient

from tests.support.metrics import exposed, sample


async def test_metrics_count_requests_by_route_template(app: FastAPI, client: AsyncClient) -> None:
    @app.get("/probe/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    labels = {"method": "GET", "route": "/probe/items/{item_id}", "status": "200"}
    before = sample((await client.get("/metrics")).text, "http_requests_total", **labels) or 0.0

    for item_id in (1, 2, 3):
        assert (await client.get(f"/probe/items/{item_id}")).status_code == 200

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "http_requests_total", **labels) == before + 3
    latency = {"method": "GET", "route": "/probe/items/{item_id}"}
    assert exposed(text, "http_request_duration_seconds_count", **latency) >= 3
    assert "/probe/items/1" not in text
