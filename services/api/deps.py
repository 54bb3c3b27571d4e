"""FastAPI dependencies as ``Annotated`` aliases: settings, state, store, backend, jobs, auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import (
    APIKeyHeader,
    APIKeyQuery,
    HTTPAuthorizationCredentials,
    HTTPBearer,
)

from services.api.auth import Access, access_of, require_write
from services.api.errors import ApiError
from services.api.media_tokens import MAX_TOKEN_CHARS, check_media_token
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


# Declare the schemes in the OpenAPI document (securitySchemes, on every route that depends on
# them); the check itself is ``access_of`` (no key configured: anyone may call).
bearer_scheme = HTTPBearer(
    scheme_name="APIKey",
    description="`Authorization: Bearer <AVID_API_KEY>` (when the service has a key)",
    auto_error=False,
)
header_scheme = APIKeyHeader(
    name="X-API-Key",
    scheme_name="XAPIKey",
    description="`X-API-Key: <AVID_API_KEY>`, the same key as the bearer token",
    auto_error=False,
)


media_token_scheme = APIKeyQuery(
    name="token",
    scheme_name="MediaToken",
    description="`?token=...` from `GET /items/{item_id}/media-url`: reads that item's media "
    "and poster, for a short while (a `<video>` cannot send a key header)",
    auto_error=False,
)

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
XApiKeyDep = Annotated[str | None, Depends(header_scheme)]


def _authorization(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return None if credentials is None else f"{credentials.scheme} {credentials.credentials}"


def get_access(
    settings: SettingsDep, credentials: BearerDep = None, x_api_key: XApiKeyDep = None
) -> Access:
    """What the caller may do (401 without a valid key, when the service has one)."""
    return access_of(settings, _authorization(credentials), x_api_key)


AccessDep = Annotated[Access, Depends(get_access)]


def require_media_access(
    item_id: str,
    settings: SettingsDep,
    credentials: BearerDep = None,
    x_api_key: XApiKeyDep = None,
    token: Annotated[str | None, Depends(media_token_scheme)] = None,
) -> None:
    """The item's media and poster: a key (either), or else a media token for this item."""
    if token is not None and credentials is None and x_api_key is None:
        if len(token) > MAX_TOKEN_CHARS:
            raise ApiError(401, "unauthorized", "invalid media token")
        check_media_token(settings, token, item_id)
        return
    access_of(settings, _authorization(credentials), x_api_key)


def require_api_key(access: AccessDep) -> None:
    """Every route except the health probes, the docs and the page depends on this: the
    full key or the read-only one."""


def require_write_key(access: AccessDep) -> None:
    """Routes that store, change or delete: the full key (403 for the read-only key)."""
    require_write(access)


Authenticated = Depends(require_api_key)
CanWrite = Depends(require_write_key)
CanReadMedia = Depends(require_media_access)
