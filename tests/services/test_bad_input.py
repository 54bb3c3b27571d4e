"""Bad input over the real HTTP app: every out-of-range parameter or oversized field is a 4xx
JSON error that names it, never a 500 (and never a dropped connection)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.routes.params import MAX_K, MAX_OFFSET, MAX_PAGE
from services.item_metadata import MAX_METADATA_BYTES, MAX_METADATA_DEPTH
from tests.services.conftest import Media, service_settings
from tests.services.test_api import assert_error, embed, total, upload


@pytest.fixture(scope="module")
def client(
    checkpoint_dir: Path, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    data_dir = tmp_path_factory.mktemp("bad-input-app")
    settings = service_settings(checkpoint_dir, data_dir, max_upload_bytes=2_000_000)
    with TestClient(create_app(settings)) as test_client:
        embed(test_client, "video", media.videos[0], id="first")
        yield test_client


HUGE = 2**63  # one past SQLite's largest integer


BAD_QUERIES: list[tuple[str, dict[str, Any], str]] = [
    ("/items", {"offset": HUGE}, "offset"),
    ("/items", {"offset": MAX_OFFSET + 1}, "offset"),
    ("/items", {"offset": -1}, "offset"),
    ("/items", {"limit": HUGE}, "limit"),
    ("/items", {"limit": MAX_PAGE + 1}, "limit"),
    ("/items", {"limit": 0}, "limit"),
    ("/search", {"video": "first", "k": HUGE}, "k"),
    ("/search", {"video": "first", "k": MAX_K + 1}, "k"),
    ("/search", {"video": "first", "k": -(2**70)}, "k"),
    ("/search", {"video": "first", "at": "inf"}, "at"),
    ("/search", {"video": "first", "at": "nan"}, "at"),
    ("/search", {"video": "first", "at": "1e999"}, "at"),
]


@pytest.mark.parametrize(("path", "params", "name"), BAD_QUERIES)
def test_out_of_range_query_parameters_are_422_naming_them(
    client: TestClient, path: str, params: dict[str, Any], name: str
) -> None:
    response = client.get(path, params=params)
    assert_error(response, 422, "invalid_request", name)


def test_the_largest_allowed_values_are_answered(client: TestClient) -> None:
    page = client.get("/items", params={"offset": MAX_OFFSET, "limit": MAX_PAGE})
    assert page.status_code == 200, page.text
    assert page.json()["items"] == []
    assert page.json()["offset"] == MAX_OFFSET
    hits = client.get("/search", params={"video": "first", "k": MAX_K})
    assert hits.status_code == 200, hits.text


def test_out_of_range_search_form_fields_are_422(client: TestClient, media: Media) -> None:
    for data, name in (({"k": HUGE}, "k"), ({"k": MAX_K + 1}, "k"), ({"at": "inf"}, "at")):
        response = client.post("/search", files=upload(media.wav), data={"target": "video", **data})
        assert_error(response, 422, "invalid_request", name)


def nested(depth: int) -> str:
    """A JSON object ``depth`` levels deep: {"a": [[...[1]...]]}."""
    return '{"a": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"


def test_metadata_nesting_and_size_are_bounded_before_embedding(
    client: TestClient, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = client.app.state.services  # type: ignore[attr-defined]

    def must_not_embed(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model ran before the metadata was checked")

    monkeypatch.setattr(state.backend, "embed_file", must_not_embed)
    before = total(client)
    stored_media = sorted(state.settings.media_dir.iterdir())
    too_big = json.dumps({"text": "x" * MAX_METADATA_BYTES})
    cases = [
        (nested(5000), 422, "invalid_metadata", f"deeper than {MAX_METADATA_DEPTH}"),
        (nested(MAX_METADATA_DEPTH + 1), 422, "invalid_metadata", str(MAX_METADATA_DEPTH)),
        ("[" * 60_000, 422, "invalid_metadata", str(MAX_METADATA_DEPTH)),
        (too_big, 413, "too_large", str(MAX_METADATA_BYTES)),
        ('{"x": NaN}', 422, "invalid_metadata", "NaN"),
    ]
    for metadata, status, code, words in cases:
        for kind, path in (("video", media.videos[1]), ("audio", media.wav)):
            response = client.post(
                f"/embed/{kind}", files=upload(path), data={"metadata": metadata}
            )
            assert_error(response, status, code, "metadata", words)
    # Over the multipart parser's own limit for a form field (1 MiB): its 4xx, still JSON.
    response = client.post(
        "/embed/video", files=upload(media.videos[1]), data={"metadata": "[" * 2_000_000}
    )
    assert_error(response, 400, "bad_request", "maximum size")
    assert total(client) == before
    assert sorted(state.settings.media_dir.iterdir()) == stored_media
    assert list(state.settings.scratch_dir.iterdir()) == []


def test_metadata_at_the_limits_is_stored(client: TestClient, media: Media) -> None:
    deep = json.loads(nested(MAX_METADATA_DEPTH))
    deep["text"] = '[{"\\' * 100  # brackets inside strings do not count as nesting
    body = embed(client, "audio", media.wav, id="deep", metadata=deep)
    assert client.get(f"/items/{body['id']}").json()["metadata"] == deep


def test_conflict_messages_name_the_http_action_that_resolves_them(
    client: TestClient, media: Media
) -> None:
    embed(client, "video", media.short_video, id="taken")
    other = upload(media.videos[2])
    response = client.post("/embed/video", files=other, data={"id": "taken"})
    assert_error(response, 409, "conflict", "'taken'", "DELETE /items/taken")
    assert "replace_item" not in response.json()["error"]["message"]
    # The advice works: delete, then the same upload is stored under the id.
    assert client.delete("/items/taken").status_code == 204
    assert embed(client, "video", media.videos[2], id="taken")["id"] == "taken"
    # A file stored as a video item becomes an audio item only once that item is deleted.
    response = client.post("/embed/audio", files=upload(media.videos[2]))
    assert_error(response, 409, "conflict", "video item 'taken'", "DELETE /items/taken")
    assert client.delete("/items/taken").status_code == 204
    assert embed(client, "audio", media.videos[2])["kind"] == "audio"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_probes_answer_head(client: TestClient, path: str) -> None:
    response = client.head(path)
    assert response.status_code == 200
    assert response.content == b""
