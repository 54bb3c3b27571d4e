"""Who may call what, over the real app: the key as ``X-API-Key`` beside the bearer header,
the read-only key (search and read, never write), CORS (off unless configured), and the page
at ``/`` with its static files (no key needed)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from services.api.app import create_app
from tests.services.conftest import Media, SettingsFactory
from tests.services.test_api import assert_error, upload

WRITE = "full-key"
READ = "read-key"


def test_x_api_key_header_is_accepted_beside_the_bearer_header(
    make_settings: SettingsFactory, media: Media
) -> None:
    with TestClient(create_app(make_settings(api_key=WRITE))) as client:
        assert client.get("/items", headers={"X-API-Key": WRITE}).status_code == 200
        assert_error(client.get("/items", headers={"X-API-Key": "nope"}), 401, "unauthorized")
        embedded = client.post(
            "/embed/audio", files=upload(media.wav), headers={"X-API-Key": WRITE}
        )
        assert embedded.status_code == 200, embedded.text
        missing = client.get("/items")
        assert_error(missing, 401, "unauthorized", "X-API-Key")


def test_the_read_only_key_searches_and_reads_but_never_writes(
    make_settings: SettingsFactory, media: Media
) -> None:
    settings = make_settings(api_key=WRITE, read_api_key=READ)
    with TestClient(create_app(settings)) as client:
        full = {"Authorization": f"Bearer {WRITE}"}
        item = client.post("/embed/video", files=upload(media.videos[0]), headers=full).json()
        item_id = item["id"]
        for headers in ({"Authorization": f"Bearer {READ}"}, {"X-API-Key": READ}):
            assert client.get("/items", headers=headers).json()["total"] == 1
            assert client.get(f"/items/{item_id}", headers=headers).status_code == 200
            assert client.get(f"/items/{item_id}/media", headers=headers).status_code == 200
            assert client.get(f"/items/{item_id}/poster", headers=headers).status_code == 200
            searched = client.post(
                "/search", files=upload(media.wav), data={"target": "video"}, headers=headers
            )
            assert searched.status_code == 200, searched.text
            assert client.get("/metrics", headers=headers).status_code == 200
            refused = [
                client.post("/embed/audio", files=upload(media.wav), headers=headers),
                client.post("/embed/video", files=upload(media.videos[1]), headers=headers),
                client.delete(f"/items/{item_id}", headers=headers),
                client.patch(f"/items/{item_id}", content='{"metadata": {}}', headers=headers),
            ]
            for response in refused:
                assert_error(response, 403, "forbidden", "read-only")
        # Refused before the body is read: an upload over the size limit is a 403, not a 413.
        huge = {"X-API-Key": READ, "Content-Length": str(10**12), "Content-Type": "video/mp4"}
        assert_error(client.post("/embed/video", headers=huge), 403, "forbidden")
        assert client.get("/items", headers=full).json()["total"] == 1
        info = client.get("/info", headers=full).json()
        assert info["access"] == "write"
        assert info["items"] == 1
        assert info["model_version"] == item["model_version"]
        assert client.get("/info", headers={"X-API-Key": READ}).json()["access"] == "read"
        assert_error(client.get("/info"), 401, "unauthorized")
        assert client.delete(f"/items/{item_id}", headers=full).status_code == 204


def test_a_read_only_key_needs_a_full_key_and_must_differ(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="needs AVID_API_KEY"):
        make_settings(read_api_key=READ)
    with pytest.raises(ValidationError, match="must differ"):
        make_settings(api_key=WRITE, read_api_key=WRITE)


def test_cors_is_off_by_default_and_answers_the_configured_origins(
    make_settings: SettingsFactory,
) -> None:
    preflight = {
        "Origin": "http://page.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    with TestClient(create_app(make_settings())) as client:
        plain = client.get("/items", headers={"Origin": "http://page.example"})
        assert "access-control-allow-origin" not in plain.headers
        assert (
            "access-control-allow-origin" not in client.options("/items", headers=preflight).headers
        )
    origins = "http://page.example, http://other.example"
    with TestClient(create_app(make_settings(cors_origins=origins))) as client:
        answer = client.options("/search", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://page.example"
        assert "x-api-key" in answer.headers["access-control-allow-headers"].lower()
        plain = client.get("/items", headers={"Origin": "http://other.example"})
        assert plain.headers["access-control-allow-origin"] == "http://other.example"
        stranger = client.get("/items", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers


def test_the_page_and_its_static_files_are_served_without_a_key(
    make_settings: SettingsFactory,
) -> None:
    with TestClient(create_app(make_settings(api_key=WRITE))) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>AVID" in page.text
        for asset, content_type in (
            ("/static/page.js", "text/javascript"),
            ("/static/page.css", "text/css"),
        ):
            assert f'"{asset}"' in page.text  # the page loads it from where it is served
            answer = client.get(asset)
            assert answer.status_code == 200, asset
            assert answer.headers["content-type"].startswith(content_type), asset
            assert len(answer.content) > 100
        assert client.get("/static/missing.js").status_code == 404
        assert_error(client.get("/items"), 401, "unauthorized")  # the API still asks for it
