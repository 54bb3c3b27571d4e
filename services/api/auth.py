"""Optional API keys (``AVID_API_KEY``, and a read-only ``AVID_READ_API_KEY``), sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, compared in constant time.

``access_of`` says what a request may do: ``"write"`` (the full key, or no key configured),
``"read"`` (the read-only key: search and read, not embed, change or delete)."""

from __future__ import annotations

import hmac
from typing import Literal

from services.api.errors import ApiError
from services.settings import Settings

Access = Literal["read", "write"]

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _matches(token: str, secret: str) -> bool:
    return hmac.compare_digest(token.encode(), secret.encode())


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: the bearer token, else the ``X-API-Key`` header."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if x_api_key is not None and x_api_key.strip():
        return x_api_key.strip()
    return None


def access_of(settings: Settings, authorization: str | None, x_api_key: str | None) -> Access:
    """What the request's key allows; a 401 ``ApiError`` without a valid key (when the
    service has one)."""
    if settings.api_key is None:
        return "write"
    key = presented_key(authorization, x_api_key)
    if key is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            _CHALLENGE,
        )
    if _matches(key, settings.api_key.get_secret_value()):
        return "write"
    if settings.read_api_key is not None and _matches(
        key, settings.read_api_key.get_secret_value()
    ):
        return "read"
    raise ApiError(401, "unauthorized", "invalid API key", _CHALLENGE)


def require_write(access: Access) -> None:
    if access != "write":
        raise ApiError(403, "forbidden", "this API key is read-only: it may search and read only")
