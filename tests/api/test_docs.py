"""The interactive API docs work with no internet access: /docs (Swagger UI) and /redoc load
their scripts, styles and favicon from the API itself, the document they show has an example of
every request body and of every success answer, and "Authorize" signs in at the token URL."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
from httpx import AsyncClient
from playwright.async_api import Browser, Page, Route, async_playwright

from api.main import create_app
from switchboard.auth.keyring import KeySnapshot
from switchboard.kit.db import SessionMaker
from switchboard.settings import Environment, Settings
from tests.support.peers import app_serving_from, with_api
from tests.support.worker import api_process

PAGES = ("/docs", "/redoc")
ASSET_TYPES = ("text/javascript", "application/javascript", "text/css", "image/png")
PASSWORD = "a long enough passphrase"
CHROMIUM = Path("/usr/bin/chromium")


class AssetReferences(HTMLParser):
    """The URLs a page makes the browser fetch: scripts, stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        url = named.get("src") if tag == "script" else named.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)


def asset_urls(html: str) -> list[str]:
    parser = AssetReferences()
    parser.feed(html)
    return parser.urls


async def test_pages_reference_only_assets_of_the_api(client: AsyncClient) -> None:
    for page in PAGES:
        response = await client.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        urls = asset_urls(response.text)

        assert any(url.endswith(".js") for url in urls), (page, urls)
        for url in urls:
            parts = urlsplit(url)
            assert not parts.scheme, (page, url)
            assert not parts.netloc, (page, url)
            assert url.startswith("/"), (page, url)
            for word in ("cdn", "jsdelivr", "unpkg", "http", "googleapis"):
                assert word not in url.lower(), (page, url)
        # Nothing else on the page (the OpenAPI URL, fonts, a validator) leaves the origin,
        # and the browser is told to fetch nothing from elsewhere.
        assert "http://" not in response.text, page
        assert "https://" not in response.text, page
        policy = response.headers["content-security-policy"]
        assert policy.startswith("default-src 'self'; script-src 'self'"), page
        assert "http" not in policy, page
        assert "*" not in policy, page


async def test_every_referenced_asset_is_served(client: AsyncClient) -> None:
    urls = {url for page in PAGES for url in asset_urls((await client.get(page)).text)}
    assert {url.rsplit("/", 1)[-1] for url in urls} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "redoc.standalone.js",
        "favicon.png",
    }
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith(ASSET_TYPES), url
        assert response.headers["x-content-type-options"] == "nosniff", url
        assert len(response.content) > 1000, url


async def test_swagger_ui_is_set_up_for_the_password_flow(client: AsyncClient) -> None:
    page = (await client.get("/docs")).text
    redirect = await client.get("/docs/oauth2-redirect")

    assert '"persistAuthorization": true' in page
    assert "ui.initOAuth(" in page
    assert "'/openapi.json'" in page
    assert redirect.status_code == 200


async def test_the_swagger_ui_url_is_not_found_without_docs(
    settings: Settings, sessionmaker: SessionMaker
) -> None:
    production = with_api(
        settings.model_copy(update={"environment": Environment.production}), docs_enabled=None
    )
    async with app_serving_from(production, sessionmaker) as (_, client_from):
        client = client_from("203.0.113.30")
        paths = [*PAGES, "/openapi.json", "/docs/oauth2-redirect"]
        paths += ["/docs/assets/swagger-ui-bundle.js", "/docs/assets/redoc.standalone.js"]
        statuses = {path: (await client.get(path)).status_code for path in paths}

    assert statuses == dict.fromkeys(paths, 404)


# --- the document's examples ------------------------------------------------------------


@pytest.fixture(scope="module")
def document(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def examples_of(document: dict[str, Any], media: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The examples Swagger UI and ReDoc show for a media type, each with the schema it must
    match: the media type's own, else its schema's (an array's items', an optional body's)."""
    schema = media.get("schema") or {}
    if "example" in media:
        return [(media["example"], schema)]
    if "examples" in media:
        return [(example["value"], schema) for example in media["examples"].values()]
    found: list[tuple[Any, Any]] = []
    for candidate in (schema, *schema.get("anyOf", [])):
        resolved = resolve(document, candidate)
        found += [(example, candidate) for example in resolved.get("examples", [])]
        if resolved.get("type") == "array":
            items = resolved["items"]
            item_examples = resolve(document, items).get("examples", [])
            found += [([example], resolved) for example in item_examples]
    return found


def test_every_request_body_has_an_example(document: dict[str, Any]) -> None:
    with_bodies = 0
    for name, operation in operations(document):
        if "requestBody" not in operation:
            continue
        with_bodies += 1
        for media_type, media in operation["requestBody"]["content"].items():
            assert examples_of(document, media), (name, media_type)
    assert with_bodies >= 19


def test_every_success_answer_has_an_example(document: dict[str, Any]) -> None:
    for name, operation in operations(document):
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, name
        for status, response in successes.items():
            # A 202 or 204 without a body has nothing to show.
            content = response.get("content", {})
            if content:
                assert any(examples_of(document, media) for media in content.values()), (
                    name,
                    status,
                )


def test_every_example_matches_its_schema(document: dict[str, Any]) -> None:
    components = {"components": document["components"]}
    checked = 0
    for name, operation in operations(document):
        contents = [operation.get("requestBody", {}).get("content", {})]
        contents += [response.get("content", {}) for response in operation["responses"].values()]
        for content in contents:
            for media_type, media in content.items():
                for example, schema in examples_of(document, media):
                    if media_type == "text/event-stream":
                        assert isinstance(example, str), name
                        continue
                    validator = jsonschema_rs.Draft202012Validator({**schema, **components})
                    errors = [error.message for error in validator.iter_errors(example)]
                    assert not errors, (name, media_type, example, errors)
                    checked += 1
    assert checked > 50


async def test_every_request_example_is_accepted(
    client: AsyncClient, document: dict[str, Any], committed_keys: KeySnapshot
) -> None:
    """What "Try it out" sends unchanged, as the owner of a new tenant: never refused as
    invalid (an id of the examples names nothing here, so 404s and 401s are expected)."""
    owner = await sign_up(client)
    answers: dict[str, list[int]] = {}
    for name, operation in operations(document):
        # A stream answers until its run ends, and no worker runs here; POST /chat takes the
        # same body.
        answered = operation["responses"].values()
        streams = any("text/event-stream" in answer.get("content", {}) for answer in answered)
        if "requestBody" not in operation or streams:
            continue
        method, path = name.split(" ", 1)
        url = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path)
        for media_type, media in operation["requestBody"]["content"].items():
            for example, _ in examples_of(document, media):
                body = (
                    {"data": example}
                    if media_type == "application/x-www-form-urlencoded"
                    else {"json": example}
                )
                response = await client.request(method, url, headers=owner, **body)
                answers.setdefault(name, []).append(response.status_code)
                assert response.status_code not in (422, 500), (name, example, response.text)

    # The examples of signing up and signing in are one account's.
    assert answers["POST /api/v1/auth/register"] == [201]
    assert answers["POST /api/v1/auth/login"] == [200]
    assert answers["POST /api/v1/auth/token"] == [200]
    assert answers["POST /api/v1/chat"] == [202, 404]


async def sign_up(client: AsyncClient) -> dict[str, str]:
    """A new tenant's owner: the Authorization header of its access token."""
    email = f"docs-{uuid.uuid4().hex[:10]}@example.com"
    registered = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "tenant_name": "D"}
    )
    assert registered.status_code == 201, registered.text
    pair = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {pair.json()['access_token']}"}


# --- Authorize ----------------------------------------------------------------------------


async def test_the_token_url_signs_in_for_a_protected_call(
    client: AsyncClient, document: dict[str, Any], committed_keys: KeySnapshot
) -> None:
    """What "Authorize" then "Try it out" do: the form posted to the scheme's token URL, then
    its access token as the bearer token of a protected operation."""
    [scheme] = document["components"]["securitySchemes"].values()
    token_url = scheme["flows"]["password"]["tokenUrl"]
    me = document["paths"]["/api/v1/auth/me"]["get"]
    assert me["security"] == [{"OAuth2PasswordBearer": []}]
    email = f"docs-{uuid.uuid4().hex[:10]}@example.com"
    registered = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "tenant_name": "D"}
    )
    assert registered.status_code == 201, registered.text

    # Swagger UI's request: its default "Authorization header" client location, no client.
    token = await client.post(
        token_url,
        data={"grant_type": "password", "username": email, "password": PASSWORD, "scope": ""},
        headers={"Authorization": "Basic Og=="},
    )
    assert token.status_code == 200, token.text
    pair = token.json()
    assert pair["token_type"] == "bearer"
    without = await client.get("/api/v1/auth/me")
    authorized = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )

    assert without.status_code == 401
    assert authorized.status_code == 200, authorized.text
    assert authorized.json()["user"]["email"] == email


# --- in a browser with no internet access -------------------------------------------------


@pytest.fixture(scope="module")
def docs_api(
    committed_keys: KeySnapshot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``python -m api`` as a developer runs it, docs served (the test environment)."""
    with api_process(tmp_path_factory.mktemp("docs-api") / "api.log") as base:
        yield base


@pytest.fixture
async def offline_page(docs_api: str) -> AsyncIterator[tuple[Page, list[str], list[str]]]:
    """A Chromium page that reaches the API and nothing else; with the URLs it asked for
    elsewhere (each refused, as without internet access) and what the pages' policy refused
    before any request."""
    if not CHROMIUM.exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    elsewhere: list[str] = []
    refused: list[str] = []

    async def only_the_api(route: Route) -> None:
        url = route.request.url
        if url.startswith((f"{docs_api}/", "data:", "blob:")):
            await route.continue_()
        else:
            elsewhere.append(url)
            await route.abort("internetdisconnected")

    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page()
            await page.route("**/*", only_the_api)
            # A script, style or image the page's policy refuses is a console error.
            page.on(
                "console",
                lambda message: (
                    refused.append(message.text)
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            yield page, elsewhere, refused
        finally:
            await browser.close()


async def test_swagger_ui_renders_and_authorizes_offline(
    docs_api: str, offline_page: tuple[Page, list[str], list[str]]
) -> None:
    page, elsewhere, refused = offline_page
    email = f"docs-ui-{uuid.uuid4().hex[:10]}@example.com"
    async with AsyncClient(base_url=docs_api, timeout=30) as api:
        registered = await api.post(
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "tenant_name": "Docs"},
        )
    assert registered.status_code == 201, registered.text

    await page.goto(f"{docs_api}/docs")
    await page.locator(".swagger-ui .opblock").first.wait_for()
    assert await page.locator(".swagger-ui .opblock").count() > 40

    # "Authorize": the password flow's form, posted to the token URL.
    await page.locator(".swagger-ui .auth-wrapper .authorize").click()
    await page.locator("#oauth_username").fill(email)
    await page.locator("#oauth_password").fill(PASSWORD)
    await page.locator(".auth-btn-wrapper .modal-btn.authorize").click()
    await page.locator(".auth-btn-wrapper button", has_text="Logout").wait_for()
    await page.locator(".auth-btn-wrapper button", has_text="Close").click()

    # "Try it out" on GET /api/v1/auth/me, which needs the bearer token.
    me = page.locator("#operations-auth-me_api_v1_auth_me_get")
    await me.locator(".opblock-summary").click()
    await me.locator(".try-out__btn").click()
    await me.locator(".execute").click()
    status = me.locator(".live-responses-table .response .response-col_status").first
    await status.wait_for()
    answer = me.locator(".live-responses-table .response-col_description pre").first
    body = await answer.inner_text()

    assert (await status.inner_text()).strip() == "200"
    assert email in body
    assert elsewhere == []
    assert refused == []


async def test_redoc_renders_offline(
    docs_api: str, offline_page: tuple[Page, list[str], list[str]]
) -> None:
    page, elsewhere, refused = offline_page

    await page.goto(f"{docs_api}/redoc")
    await page.locator("h1", has_text="Switchboard").wait_for()
    # An operation's response sample: the example of its schema.
    await page.get_by_text("please check my invoice").first.wait_for(state="attached")

    assert elsewhere == []
    # Only the vendor's logo, which ReDoc hides when it does not load.
    assert len(refused) == 1
    assert "https://cdn.redoc.ly/redoc/logo-mini.svg" in refused[0]
