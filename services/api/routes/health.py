"""``/healthz`` (alive), ``/readyz`` (ready to serve), ``/metrics`` (Prometheus text).

The two probes answer ``HEAD`` as well as ``GET`` (load balancers and uptime checkers send it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from services.api.deps import AccessDep, Authenticated, StateDep
from services.api.schemas import ERROR_RESPONSES, ServiceInfo
from services.api.state import ServiceState

router = APIRouter(tags=["health"])


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", responses={503: {"description": "not ready (see checks)"}})
def readyz(request: Request) -> JSONResponse:
    """Model loaded and index open; with a broker: Redis reachable and at least one live
    worker of the service's model (``checks.workers``), the live workers listed (``workers``:
    hostname, model version, concurrency)."""
    state: ServiceState | None = getattr(request.app.state, "services", None)
    checks: dict[str, Any] = state.readiness_report() if state is not None else {"started": False}
    ready = state is not None and all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if state is not None and state.live_workers is not None:
        body["workers"] = state.live_workers()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/info", response_model=ServiceInfo, responses=ERROR_RESPONSES)
def info(state: StateDep, access: AccessDep) -> ServiceInfo:
    """The model version, how many items it holds, and what the caller's key may do (the
    page reads it to show the version and to hide what a read-only key cannot do)."""
    return ServiceInfo(
        model_version=state.backend.model_version,
        items=state.store.stats()["items"],
        access=access,
        max_upload_bytes=state.settings.max_upload_bytes,
        sync_max_seconds=state.settings.sync_max_seconds,
    )


@router.get("/metrics", dependencies=[Authenticated], response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus text: requests, latency, batch sizes, queue depth, index sizes, jobs."""
    text = await run_in_threadpool(
        lambda: state.metrics.render(state.store.stats(), state.jobs.counts())
    )
    return Response(text, media_type=CONTENT_TYPE_LATEST)
