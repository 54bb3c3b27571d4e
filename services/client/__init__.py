"""A typed Python client for a running AVID service (httpx), and the ``avid client``
commands built on it. Knows the API only through HTTP: it imports nothing of the server."""

from services.client.http_client import (
    AvidClient,
    ClientError,
    EmbedOutcome,
    Item,
    ItemPage,
    SearchHit,
)

__all__ = ["AvidClient", "ClientError", "EmbedOutcome", "Item", "ItemPage", "SearchHit"]
