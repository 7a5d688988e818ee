"""The interactive API docs, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, served whole by
the API: their JavaScript, CSS and favicon are the copies the ``fastapi-offline`` package ships,
so the pages work with no internet access (FastAPI's own pages load them from a CDN).
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

SWAGGER_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs/assets"
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png.
ASSETS = Path(str(files("fastapi_offline") / "static"))

# Everything from the API itself, so a page never reaches out (ReDoc would fetch its vendor's
# logo from a CDN): scripts from the API, plus Swagger UI's one inline script by its hash;
# styles inline too (both pages inject theirs), images also as data: URLs, ReDoc's search in
# a blob: worker.
_CSP = (
    "default-src 'self'; script-src 'self'{inline}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

SWAGGER_PARAMETERS: dict[str, Any] = {
    # The token from "Authorize" survives a reload of the page (it lives in the browser's
    # localStorage until "Logout" or its 15 minutes are up).
    "persistAuthorization": True,
    # Swagger UI would send the document to validator.swagger.io for its badge.
    "validatorUrl": None,
    "displayRequestDuration": True,
}
# The password flow needs no client: "Authorize" posts the username (an email) and password
# to the token URL, and no client id or secret is asked for or sent.
SWAGGER_INIT_OAUTH: dict[str, Any] = {"appName": "Switchboard API docs"}


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Adds the docs pages, the OAuth2 redirect page and their assets to ``app`` (built with
    ``docs_url=None, redoc_url=None``), none of them in the OpenAPI document."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            init_oauth=SWAGGER_INIT_OAUTH,
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        return _with_policy(page)

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = _root_path(request)
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        return _with_policy(page)

    app.add_route(SWAGGER_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)


def _root_path(request: Request) -> str:
    root = request.scope.get("root_path", "")
    return str(root).rstrip("/")


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    """``page`` with a Content-Security-Policy allowing its own inline scripts by hash."""
    html = bytes(page.body).decode()
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    page.headers["Content-Security-Policy"] = _CSP.format(inline=hashes)
    return page
