"""Optional bearer-token authentication (``AVID_API_KEY``), compared in constant time."""

from __future__ import annotations

import hmac

from services.api.errors import ApiError
from services.settings import Settings

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def check_bearer(settings: Settings, authorization: str | None) -> None:
    """Raise a 401 ``ApiError`` unless no key is configured or the header carries it."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing 'Authorization: Bearer <key>'", _CHALLENGE)
    if not hmac.compare_digest(token.strip().encode(), expected):
        raise ApiError(401, "unauthorized", "invalid API key", _CHALLENGE)
