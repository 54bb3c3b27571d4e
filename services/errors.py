"""The service core's own errors: framework-free, each with a machine-readable ``code``.

Raised below ``services.api`` (ingest, query, uploads, the backends) and mapped to HTTP once,
in ``services.api.errors`` (by class: ``InvalidInput`` 422, ``TooLarge`` 413, ``Conflict`` 409,
``NotFound`` 404, ``Unavailable`` 503). The model library's ``MediaError`` family and the index
store's ``IndexStoreError`` family are mapped there too.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class of the core's errors; ``str(err)`` says what went wrong to a person."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(ServiceError):
    """A request whose fields cannot be used (HTTP 422)."""

    code = "invalid_request"


class TooLarge(ServiceError):
    """A field over its size limit (HTTP 413)."""

    code = "too_large"


class Conflict(ServiceError):
    """The request contradicts what is stored (HTTP 409)."""

    code = "conflict"


class NotFound(ServiceError):
    """Nothing by that name (HTTP 404)."""

    code = "not_found"


class Unavailable(ServiceError):
    """The service cannot do it now: shutting down, no worker, broker down (HTTP 503)."""

    code = "unavailable"
