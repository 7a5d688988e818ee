"""With API_CORS_ORIGINS set, scripts on those origins may read the headers clients act on."""

from __future__ import annotations

from api.main import create_app
from switchboard.kit.db import SessionMaker
from switchboard.settings import Settings
from tests.support.app import in_test_transaction
from tests.support.peers import with_api

ORIGIN = "https://app.example"


async def test_cross_origin_responses_expose_the_headers_clients_read(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    app = create_app(with_api(settings, cors_origins=[ORIGIN]))
    async with in_test_transaction(app, sessionmaker) as client:
        answers = [
            await client.get("/health/live", headers={"Origin": ORIGIN}),
            await client.get("/api/v1/tenant/members", headers={"Origin": ORIGIN}),
        ]

    assert [r.status_code for r in answers] == [200, 401]
    for response in answers:
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = {
            name.strip().lower()
            for name in response.headers["access-control-expose-headers"].split(",")
        }
        assert {"x-request-id", "link", "retry-after", "ratelimit", "ratelimit-policy"} <= exposed


async def test_other_origins_get_no_cors_headers(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    app = create_app(with_api(settings, cors_origins=[ORIGIN]))
    async with in_test_transaction(app, sessionmaker) as client:
        response = await client.get("/health/live", headers={"Origin": "https://evil.example"})

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
