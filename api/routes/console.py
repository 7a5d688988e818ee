"""The web console: the single-page app built from ``console/`` into ``console/dist``.

``/console`` and every path under it that names no file answer ``index.html`` (the app routes
in the browser); files under ``/console/assets/`` carry a content hash in their names and are
cached for a year. Until the app is built the console answers 503 with a page that says how
to build it: the API itself is up, only the console is missing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

DIST = Path(__file__).resolve().parents[2] / "console" / "dist"

# Scripts, styles and API calls come from this origin alone; no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_IMMUTABLE = "public, max-age=31536000, immutable"

NOT_BUILT = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Switchboard console not built</title></head>
<body>
<h1>The Switchboard console is not built</h1>
<p>The API is running, but <code>console/dist</code> is missing. Build the console with
<code>make dev</code> (it builds it before starting), or by hand:</p>
<pre>cd clients/typescript &amp;&amp; npm ci &amp;&amp; npm run build
cd ../../console &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>then reload this page.</p>
</body>
</html>
"""


def console_router(dist: Path = DIST) -> APIRouter:
    """Routes serving the built console from ``dist``, read at each request, so a rebuild
    shows without a restart. Plain functions: their file system calls run in the thread pool."""
    router = APIRouter(prefix="/console", include_in_schema=False)

    def index() -> Response:
        page = dist / "index.html"
        if not page.is_file():
            return HTMLResponse(
                NOT_BUILT,
                status_code=503,
                headers={**_PAGE_HEADERS, "Cache-Control": "no-store", "Retry-After": "60"},
            )
        return FileResponse(page, headers={**_PAGE_HEADERS, "Cache-Control": "no-cache"})

    @router.api_route("", methods=["GET", "HEAD"])
    @router.api_route("/", methods=["GET", "HEAD"])
    def console_index() -> Response:
        return index()

    @router.api_route("/{path:path}", methods=["GET", "HEAD"])
    def console_file(path: str) -> Response:
        root = dist.resolve()
        try:
            target = (root / path).resolve()
        except (OSError, ValueError):
            raise HTTPException(404) from None
        if target.is_relative_to(root) and target.is_file():
            immutable = target.parent == root / "assets"
            cache = _IMMUTABLE if immutable else "no-cache"
            return FileResponse(target, headers={**_PAGE_HEADERS, "Cache-Control": cache})
        if "." in path.rsplit("/", 1)[-1]:
            # A file that is not there (an old asset, a typo): not the app's page.
            raise HTTPException(404)
        return index()

    return router


router = console_router()
