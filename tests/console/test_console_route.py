"""How the API serves the console's files (api/routes/console.py), on a built tree of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from api.errors import install_error_handlers
from api.routes.console import console_router


def app_for(dist: Path) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(console_router(dist))
    return app


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "dist" / "assets").mkdir(parents=True)
    (tmp_path / "dist" / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "dist" / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "dist" / "robots.txt").write_text("User-agent: *")
    (tmp_path / "secret.txt").write_text("outside the tree")
    return tmp_path / "dist"


async def get(dist: Path, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    transport = ASGITransport(app_for(dist))
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.request(method, path)
        return answer.status_code, dict(answer.headers), answer.text


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/c/123", "/console/usage"])
async def test_app_paths_answer_the_page(dist: Path, path: str) -> None:
    status, headers, body = await get(dist, path)
    assert status == 200
    assert body == "<!doctype html><title>console</title>"
    assert headers["cache-control"] == "no-cache"
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-frame-options"] == "DENY"


async def test_hashed_assets_are_cached_for_good_and_other_files_revalidated(dist: Path) -> None:
    status, headers, body = await get(dist, "/console/assets/index-abc123.js")
    assert (status, body) == (200, "console.log(1)")
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    status, headers, _ = await get(dist, "/console/robots.txt")
    assert (status, headers["cache-control"]) == (200, "no-cache")
    status, _, _ = await get(dist, "/console/", method="HEAD")
    assert status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/console/assets/index-gone.js",
        "/console/favicon.ico",
        "/console/../secret.txt",
        "/console/%2e%2e/secret.txt",
        "/console/..%2fsecret.txt",
    ],
)
async def test_missing_files_and_paths_out_of_the_tree_are_404(dist: Path, path: str) -> None:
    status, headers, body = await get(dist, path)
    assert status == 404
    assert "outside the tree" not in body
    assert headers["content-type"] == "application/problem+json"


async def test_an_unbuilt_console_says_how_to_build_it(tmp_path: Path) -> None:
    status, headers, body = await get(tmp_path / "dist", "/console/c/123")
    assert status == 503
    assert headers["content-type"].startswith("text/html")
    assert headers["cache-control"] == "no-store"
    assert "make dev" in body
    assert "npm run build" in body
