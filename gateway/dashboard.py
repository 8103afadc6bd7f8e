"""The fleet dashboard at ``/dashboard``: one static page, no build step, nothing fetched from outside.

The page (``gateway/static/dashboard/``) polls the gateway's own JSON
endpoints (``/v1/fleet``, ``/v1/requests/recent``) and draws with
hand-written SVG. Its routes carry no fleet data, so they are open; the
page sends the API key given as ``#key=...`` in its URL when keys are on.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from gateway import errors

STATIC = Path(__file__).parent / "static" / "dashboard"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

router = APIRouter()


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type=_TYPES[".html"], headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/", include_in_schema=False)
async def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> FileResponse:
    path = STATIC / name
    if path.suffix not in _TYPES or path.parent != STATIC or not path.is_file():
        raise errors.NotFound(f"no dashboard file {name!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})
