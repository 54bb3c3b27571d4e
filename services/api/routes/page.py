"""``GET /``: the page (plain HTML and JavaScript under ``services/api/static``, no build
step), which calls the API from the browser. The page itself needs no key: it asks for one
when the API answers 401."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
