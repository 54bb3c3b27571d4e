"""The FastAPI app (embedded mode: model, batcher, index and jobs in this one process).

``create_app(settings)`` builds an app; nothing heavy happens at import or in ``create_app``:
the model is loaded and the index opened in the lifespan. Without ``settings`` the lifespan
takes them from the ``get_settings`` dependency (which tests may override). On shutdown the
lifespan gives running jobs what is left of ``AVID_SHUTDOWN_GRACE_S`` since the server was
told to stop (``app.state.shutdown_clock``, started by ``services.api.server``; all of it
when nothing started the clock, as under TestClient).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from services.api.errors import install_exception_handlers
from services.api.metrics import MetricsMiddleware, ServiceMetrics
from services.api.request_guard import RequestGuardMiddleware
from services.api.routes import batch, embed, health, item_files, items, jobs, page, search
from services.api.state import start_services
from services.settings import Settings, get_settings

API_DESCRIPTION = """\
Audio-visual embeddings (AVID): video and audio encoders whose 128-d unit vectors share one
space. Embed and store media, then search across modalities: a sound finds the videos it
belongs to, a video the sounds that fit it. Errors are `{"error": {"code", "message"}}`.
"""


class ShutdownClock:
    """When the server was first told to stop, and how much of a grace period is left."""

    def __init__(self) -> None:
        self.began: float | None = None

    def start(self) -> None:
        if self.began is None:
            self.began = time.monotonic()

    def left(self, grace_s: float) -> float:
        if self.began is None:
            return grace_s
        return max(0.0, self.began + grace_s - time.monotonic())


def create_app(settings: Settings | None = None) -> FastAPI:
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings
        if resolved is None:
            resolved = app.dependency_overrides.get(get_settings, get_settings)()
        state = await run_in_threadpool(start_services, resolved, metrics)
        app.state.services = state
        try:
            yield
        finally:
            app.state.services = None
            grace_s = app.state.shutdown_clock.left(resolved.shutdown_grace_s)
            await run_in_threadpool(state.close, grace_s)

    app = FastAPI(
        title="AVID embedding service",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = None
    app.state.shutdown_clock = ShutdownClock()
    install_exception_handlers(app)
    app.add_middleware(RequestGuardMiddleware)
    routers = [
        module.router for module in (embed, batch, search, items, item_files, jobs, health, page)
    ]
    routes = [route for router in routers for route in router.routes]
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR), name="static")
    origins = (settings or get_settings()).cors_origin_list
    if origins:  # outermost, so a browser's preflight (OPTIONS) is answered before the rest
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Accept-Ranges", "Content-Length", "Location"],
        )
    return app
