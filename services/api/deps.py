"""FastAPI dependencies as ``Annotated`` aliases: settings, state, store, backend, jobs, auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.auth import check_bearer
from services.api.errors import ApiError
from services.api.state import ServiceState
from services.embedding import EmbeddingBackend
from services.index import IndexStore
from services.jobs import JobRunner
from services.settings import Settings


def get_state(request: Request) -> ServiceState:
    state: ServiceState | None = getattr(request.app.state, "services", None)
    if state is None:
        raise ApiError(503, "unavailable", "the service is not started")
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_app_settings(state: StateDep) -> Settings:
    return state.settings


def get_store(state: StateDep) -> IndexStore:
    return state.store


def get_backend(state: StateDep) -> EmbeddingBackend:
    return state.backend


def get_jobs(state: StateDep) -> JobRunner:
    return state.jobs


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[IndexStore, Depends(get_store)]
BackendDep = Annotated[EmbeddingBackend, Depends(get_backend)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]


# Declares the scheme in the OpenAPI document (securitySchemes.APIKey, on every route that
# depends on it); the check itself is ``check_bearer`` (no key configured: anyone may call).
bearer_scheme = HTTPBearer(
    scheme_name="APIKey",
    description="`Authorization: Bearer <AVID_API_KEY>` (when the service has a key)",
    auto_error=False,
)


def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)] = None,
) -> None:
    """Every route except the health probes and the docs depends on this."""
    header = None if credentials is None else f"{credentials.scheme} {credentials.credentials}"
    check_bearer(settings, header)


Authenticated = Depends(require_api_key)
