"""The homeowner's web dashboard: one static single-page app at ``/``, assets under ``/static``.

No build step and nothing fetched from a CDN: plain HTML, ES modules and CSS
shipped in ``cloud/web/static``. The page talks only to the JSON API with the
user's bearer token, so these routes need no session or database.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

# The app loads only its own scripts and styles; images come from blob: URLs of authenticated fetches.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/", response_class=FileResponse)
def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


@router.get("/sw.js", response_class=FileResponse)
def service_worker() -> FileResponse:
    """The service worker, at the root so that its scope is the whole dashboard (Web Push alerts)."""
    return FileResponse(STATIC_DIR / "sw.js", media_type="text/javascript", headers=_PAGE_HEADERS)


@router.get("/manifest.webmanifest", response_class=FileResponse)
def manifest() -> FileResponse:
    """The web app manifest: the dashboard installs as an app (needed for push on iOS)."""
    return FileResponse(STATIC_DIR / "manifest.webmanifest", media_type="application/manifest+json",
                        headers=_PAGE_HEADERS)


class _RevalidatedStaticFiles(StaticFiles):
    """Static files that the browser revalidates (ETag) on each load: no stale modules after an upgrade."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` and its assets at ``/static``."""
    app.include_router(router)
    app.mount("/static", _RevalidatedStaticFiles(directory=STATIC_DIR), name="static")
