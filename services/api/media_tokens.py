"""Short-lived signed media URLs: ``GET /items/{id}/media?token=...`` for a ``<video>`` or
``<img>`` element, which cannot send the API key header (S3's presigned URLs, in small).

A token is ``<payload>.<signature>``, both base64url: the payload the JSON
``{"item": ID, "exp": UNIX_SECONDS}``, the signature its HMAC-SHA256 under a key derived from
``AVID_API_KEY`` (so changing the key voids every token). It lets its bearer read one item's
kept file and poster until it expires, nothing else: no other item, no write, no search."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time

from services.api.errors import ApiError
from services.settings import Settings

MAX_TOKEN_CHARS = 600  # an item id of 200 characters, base64url-encoded, and a signature
_DOMAIN = b"avid media token v1"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signing_key(api_key: str) -> bytes:
    return hmac.new(api_key.encode(), _DOMAIN, hashlib.sha256).digest()


def _signature(api_key: str, payload: str) -> str:
    return _b64(hmac.new(_signing_key(api_key), payload.encode(), hashlib.sha256).digest())


def issue_media_token(api_key: str, item_id: str, ttl_s: float, now: float | None = None) -> str:
    """A token for ``item_id``'s media, valid ``ttl_s`` seconds from ``now``."""
    expires = int((time.time() if now is None else now) + ttl_s)
    body = json.dumps({"item": item_id, "exp": expires}, separators=(",", ":"))
    payload = _b64(body.encode())
    return f"{payload}.{_signature(api_key, payload)}"


def token_expiry(token: str) -> int:
    """When a token this service issued expires (UNIX seconds)."""
    return int(json.loads(_unb64(token.partition(".")[0]))["exp"])


def _refused(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, _CHALLENGE)


def check_media_token(settings: Settings, token: str, item_id: str) -> None:
    """Let the request through when ``token`` is this service's, for ``item_id`` and not
    expired; else a 401 ``ApiError`` (403 for a token of another item)."""
    if settings.api_key is None:
        return
    payload, dot, signature = token.partition(".")
    expected = _signature(settings.api_key.get_secret_value(), payload)
    if not dot or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise _refused("invalid media token")
    try:
        claims = json.loads(_unb64(payload))
        token_item, expires = str(claims["item"]), int(claims["exp"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _refused("invalid media token") from None
    if token_item != item_id:
        raise ApiError(403, "forbidden", "this media token is for another item")
    if expires <= time.time():
        raise _refused(
            f"the media token expired; GET /items/{item_id}/media-url (with the key) for a new one"
        )
