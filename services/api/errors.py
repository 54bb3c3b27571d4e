"""Every error the API returns, mapped once: a JSON body ``{"error": {"code", "message"}}``.

``describe(exc)`` gives (HTTP status, code, message) for any exception; the exception
handlers and the background jobs (whose ``error`` is the same ``{"code", "message"}``) use it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from avid_model.errors import MediaError
from services.batcher import BatcherClosed
from services.errors import Conflict, InvalidInput, NotFound, ServiceError, TooLarge, Unavailable
from services.index import (
    BadItem,
    DuplicateContent,
    IndexStoreError,
    ItemExists,
    ItemNotFound,
    ModelVersionMismatch,
    WindowNotFound,
)
from services.jobs import JobNotFound

log = logging.getLogger(__name__)

_MEDIA_413 = frozenset({"too_long", "too_large"})
_SERVICE_STATUS: dict[type, int] = {
    InvalidInput: 422,
    TooLarge: 413,
    Conflict: 409,
    NotFound: 404,
    Unavailable: 503,
}
_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "body_timeout",
    413: "too_large",
    422: "invalid_request",
}


class ApiError(Exception):
    """An error raised on purpose by a route, with its status and machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def describe(exc: Exception) -> tuple[int, str, str]:
    """(HTTP status, code, message) for an exception; unknown ones are a bare 500."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, MediaError):
        return (413 if exc.code in _MEDIA_413 else 422), exc.code, exc.message
    if isinstance(exc, ServiceError):
        status = next((_SERVICE_STATUS[c] for c in type(exc).__mro__ if c in _SERVICE_STATUS), 500)
        return status, exc.code, exc.message
    if isinstance(exc, ItemNotFound | JobNotFound):
        return 404, "not_found", str(exc)
    if isinstance(exc, DuplicateContent):
        hint = f"; GET /items/{exc.item_id} shows it, DELETE /items/{exc.item_id} frees the file"
        return 409, "duplicate_content", f"{exc}{hint}"
    if isinstance(exc, ItemExists):
        hint = f"; DELETE /items/{exc.item_id} first to store this upload in its place"
        return 409, "conflict", f"{exc}{hint if exc.item_id else ''}"
    if isinstance(exc, ModelVersionMismatch):
        return 409, "model_version_mismatch", f"{exc}; run `avid reindex`"
    if isinstance(exc, WindowNotFound):
        return 422, "no_window", str(exc)
    if isinstance(exc, BadItem):
        return 422, "bad_item", str(exc)
    if isinstance(exc, BatcherClosed):
        return 503, "unavailable", "the service is shutting down"
    if isinstance(exc, IndexStoreError):
        return 500, "index_error", str(exc)
    return 500, "internal", "internal server error"


def job_error(exc: Exception) -> dict[str, str]:
    """The ``error`` of a failed background job."""
    _, code, message = describe(exc)
    return {"code": code, "message": message}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _validation_message(errors: Sequence[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", _validation_message(exc.errors()))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code)
    if code is None:
        try:
            code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        except ValueError:
            code = "http_error"
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def _on_known(request: Request, exc: Exception) -> JSONResponse:
    status, code, message = describe(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    headers = exc.headers if isinstance(exc, ApiError) else None
    return error_response(status, code, message, headers)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    known_errors: tuple[type[Exception], ...] = (
        ApiError,
        MediaError,
        IndexStoreError,
        JobNotFound,
        BatcherClosed,
        ServiceError,
        Exception,
    )
    for known in known_errors:
        app.add_exception_handler(known, _on_known)
