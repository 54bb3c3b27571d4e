"""Signed media URLs over the real app: ``GET /items/{id}/media-url`` (with a key, the
read-only one too) gives URLs whose ``token`` plays that one item's media, with HTTP Range,
and its poster, without a key header; a missing, forged, expired or other item's token is
refused, and a token opens nothing else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.media_tokens import issue_media_token
from services.client import AvidClient, ClientError
from tests.services.conftest import Media, SettingsFactory, service_settings
from tests.services.test_api import assert_error

KEY = "media-key"
READ_KEY = "media-read-key"
WRITE = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def client(checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir = tmp_path_factory.mktemp("media-tokens")
    settings = service_settings(
        checkpoint_dir, data_dir, api_key=KEY, read_api_key=READ_KEY, media_token_ttl_s=120
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def items(client: TestClient, media: Media) -> tuple[str, str]:
    ids = []
    for path in media.videos[:2]:
        response = client.post(
            "/embed/video", files={"file": (path.name, path.read_bytes())}, headers=WRITE
        )
        assert response.status_code == 200, response.text
        ids.append(str(response.json()["id"]))
    return ids[0], ids[1]


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_a_signed_url_streams_the_item_with_range_and_no_key_header(
    client: TestClient, media: Media, items: tuple[str, str]
) -> None:
    item, _ = items
    assert_error(client.get(f"/items/{item}/media"), 401, "unauthorized")
    before = time.time()
    response = client.get(f"/items/{item}/media-url", headers={"X-API-Key": READ_KEY})
    assert response.status_code == 200, response.text
    body = response.json()
    assert urlsplit(body["url"]).path == f"/items/{item}/media"
    assert urlsplit(body["poster_url"]).path == f"/items/{item}/poster"
    assert token_of(body["url"]) == token_of(body["poster_url"])
    assert before + 119 <= body["expires_at"] <= time.time() + 121
    data = media.videos[0].read_bytes()
    part = client.get(body["url"], headers={"Range": "bytes=100-299"})
    assert part.status_code == 206, part.text
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    assert part.content == data[100:300]
    whole = client.get(body["url"])
    assert (whole.status_code, whole.content) == (200, data)
    poster = client.get(body["poster_url"])
    assert poster.status_code == 200
    assert poster.headers["content-type"] == "image/jpeg"
    assert_error(client.get("/items/missing/media-url", headers=WRITE), 404, "not_found")
    assert_error(client.get(f"/items/{item}/media-url"), 401, "unauthorized")


def test_missing_forged_expired_and_other_items_tokens_are_refused(
    client: TestClient, items: tuple[str, str]
) -> None:
    item, other = items
    media = f"/items/{item}/media"
    good = token_of(client.get(f"{media}-url", headers=WRITE).json()["url"])
    payload, _, signature = good.partition(".")
    refused = {
        "garbage": "not-a-token",
        "no signature": payload,
        "tampered signature": f"{payload}.{signature[:-2]}AA",
        "another key's": issue_media_token("some-other-key", item, 60),
        "too long": "a" * 2000,
    }
    for why, token in refused.items():
        response = client.get(media, params={"token": token}, headers={"Range": "bytes=0-9"})
        assert response.status_code == 401, (why, response.text)
        assert_error(response, 401, "unauthorized", "invalid media token")
    expired = issue_media_token(KEY, item, 60, now=time.time() - 120)
    assert_error(client.get(media, params={"token": expired}), 401, "unauthorized", "expired")
    for_other = token_of(client.get(f"/items/{other}/media-url", headers=WRITE).json()["url"])
    assert_error(client.get(media, params={"token": for_other}), 403, "forbidden", "another item")
    assert_error(client.get(f"/items/{item}/poster", params={"token": for_other}), 403, "forbidden")
    # A key header decides when one is sent (a wrong key is not rescued by a token).
    response = client.get(media, params={"token": good}, headers={"X-API-Key": "wrong"})
    assert_error(response, 401, "unauthorized", "invalid API key")
    # The token opens the item's files only: not the item, the list, search, or a write.
    only_token = {"token": good}
    assert_error(client.get(f"/items/{item}", params=only_token), 401, "unauthorized")
    assert_error(client.get("/items", params=only_token), 401, "unauthorized")
    assert_error(client.get(f"/items/{item}/media-url", params=only_token), 401, "unauthorized")
    assert_error(client.delete(f"/items/{item}", params=only_token), 401, "unauthorized")
    assert_error(
        client.patch(f"/items/{item}", params=only_token, json={"metadata": {"a": 1}}),
        401,
        "unauthorized",
    )
    assert client.get(f"/items/{item}", headers=WRITE).status_code == 200  # still there


def test_without_a_service_key_the_urls_are_plain(
    make_settings: SettingsFactory, media: Media
) -> None:
    with TestClient(create_app(make_settings())) as client:
        path = media.short_video
        item = client.post("/embed/video", files={"file": (path.name, path.read_bytes())})
        item_id = item.json()["id"]
        body = client.get(f"/items/{item_id}/media-url").json()
        assert body["expires_at"] is None
        assert body["url"] == f"http://testserver/items/{item_id}/media"
        assert client.get(body["url"], headers={"Range": "bytes=0-9"}).status_code == 206


def test_the_client_gets_signed_urls_and_sends_batches(
    client: TestClient, media: Media, items: tuple[str, str]
) -> None:
    with AvidClient("http://testserver", READ_KEY, transport=client._transport) as avid:
        urls = avid.media_url(items[0])
    assert client.get(urls["url"], headers={"Range": "bytes=0-9"}).status_code == 206
    with AvidClient("http://testserver", KEY, transport=client._transport) as avid:
        entries = avid.embed_batch(
            [media.short_video, media.wav],
            ids=["short-x", None],
            metadatas=[{"label": "x"}, None],
            metadata={"set": "client"},
        )
        assert [e["status"] for e in entries] == [200, 200]
        assert avid.item("short-x").metadata == {"set": "client", "label": "x"}
        assert avid.item(entries[1]["result"]["id"]).metadata == {"set": "client"}
        with pytest.raises(ClientError) as refused:
            avid.embed_batch([media.short_video], ids=["a", "b"])
        assert (refused.value.status, refused.value.code) == (422, "invalid_batch")
        for entry in entries:
            avid.delete(entry["result"]["id"])
