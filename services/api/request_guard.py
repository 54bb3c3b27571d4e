"""Limits enforced on the raw request, before FastAPI parses a multipart body (it does so
before any dependency runs): the API key (401; 403 for the read-only key on ``/embed/*`` and
``PATCH``, before its upload is read), the body size (413) — announced by
``Content-Length`` (refused before reading) or counted while it streams (chunked uploads) —
and a body that stalls (408): no new bytes for ``body_timeout_s`` cut the request off, so a
slow or stuck client cannot hold a worker thread and a half-written upload forever."""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.auth import access_of, require_write
from services.api.errors import ApiError, error_response
from services.api.state import ServiceState

MULTIPART_OVERHEAD = 1 << 20  # bytes allowed on top of the file for the form's other parts
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _writes(scope: Scope) -> bool:
    """Whether the request stores or changes something (the full key's business)."""
    path: str = scope.get("path", "")
    return path.startswith("/embed/") or scope.get("method") == "PATCH"


def _too_large(max_upload_bytes: int, what: str) -> str:
    return f"{what} is over the upload limit of {max_upload_bytes} bytes"


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: ServiceState | None = None
        if scope["type"] == "http" and scope.get("method") in _BODY_METHODS:
            state = getattr(scope["app"].state, "services", None)
        if state is None:
            await self.app(scope, receive, send)
            return
        settings = state.settings
        limit = settings.max_upload_bytes + MULTIPART_OVERHEAD
        headers = Headers(scope=scope)
        try:
            access = access_of(settings, headers.get("authorization"), headers.get("x-api-key"))
            if access == "read" and _writes(scope):
                require_write(access)  # 403 before a read-only key's upload is read
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                message = _too_large(settings.max_upload_bytes, f"request body of {length} bytes")
                raise ApiError(413, "too_large", message)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.headers)
            await response(scope, receive, send)
            return

        received = 0
        idle_s = settings.body_timeout_s

        async def counting_receive() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), timeout=idle_s)
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body stalled: no data for {idle_s:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises an HTTPException met while parsing the body, so this
                    # reaches the app's exception handler (a JSON 413).
                    raise HTTPException(413, _too_large(settings.max_upload_bytes, "request body"))
            return message

        await self.app(scope, counting_receive, send)
