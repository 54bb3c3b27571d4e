"""The same bytes are one item: uploaded again under another id they are a 409
``duplicate_content`` naming the stored id (never a 200 with the old id), and every refusal
the store would make (id, kind, content) happens before the model embeds anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.index import DuplicateContent, IndexStore
from tests.services.conftest import Media, service_settings
from tests.services.index_store_helpers import VERSION, make_item
from tests.services.test_api import assert_error, embed, total, upload


@pytest.fixture(scope="module")
def client(
    checkpoint_dir: Path, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = service_settings(checkpoint_dir, tmp_path_factory.mktemp("duplicate-app"))
    with TestClient(create_app(settings)) as test_client:
        embed(test_client, "video", media.videos[0], id="stored-video")
        embed(test_client, "audio", media.wav, id="stored-audio")
        yield test_client


class EmbedCounter:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


@pytest.fixture
def embed_calls(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> EmbedCounter:
    backend = client.app.state.services.backend  # type: ignore[attr-defined]
    counter = EmbedCounter(backend.embed_file)
    monkeypatch.setattr(backend, "embed_file", counter)
    return counter


def test_the_same_bytes_under_another_id_are_409_duplicate_content(
    client: TestClient, media: Media, embed_calls: EmbedCounter
) -> None:
    before = total(client)
    response = client.post("/embed/video", files=upload(media.videos[0]), data={"id": "copy"})
    assert_error(response, 409, "duplicate_content", "'stored-video'", "'copy'")
    assert "GET /items/stored-video" in response.json()["error"]["message"]
    assert client.get("/items/copy").status_code == 404
    assert total(client) == before
    assert embed_calls.calls == 0
    # A client-side rename of the file changes nothing: the content is what counts.
    renamed = upload(media.videos[0], name="renamed.mov")
    response = client.post("/embed/video", files=renamed, data={"id": "copy"})
    assert_error(response, 409, "duplicate_content", "'stored-video'")
    # Without an id, or with the stored one, the same bytes answer the stored item (idempotent).
    assert embed(client, "video", media.videos[0])["id"] == "stored-video"
    assert embed(client, "video", media.videos[0], id="stored-video")["id"] == "stored-video"
    assert total(client) == before


def test_every_conflict_is_refused_before_the_model_runs(
    client: TestClient, media: Media, embed_calls: EmbedCounter
) -> None:
    media_dir = client.app.state.services.settings.media_dir  # type: ignore[attr-defined]
    kept = sorted(media_dir.iterdir())
    cases = [
        # another file under a taken id
        ("video", media.videos[1], {"id": "stored-video"}, "conflict", "'stored-video'"),
        # a stored video file sent as a sound, and a stored sound sent as a video
        ("audio", media.videos[0], {}, "conflict", "video item 'stored-video'"),
        ("video", media.wav, {"id": "x"}, "no_stream", "no video stream"),
        # the same sound under another id
        ("audio", media.wav, {"id": "other"}, "duplicate_content", "'stored-audio'"),
    ]
    for kind, path, data, code, words in cases:
        response = client.post(f"/embed/{kind}", files=upload(path), data=data)
        status = 422 if code == "no_stream" else 409
        assert_error(response, status, code, words)
    assert embed_calls.calls == 0
    assert sorted(media_dir.iterdir()) == kept  # no refused upload left a file


def test_the_store_refuses_duplicate_content_under_another_id(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with IndexStore(tmp_path / "index", model_version=VERSION) as store:
        store.add_item(make_item(rng, "hash-1", item_id="first"))
        with pytest.raises(DuplicateContent, match="'first'") as refused:
            store.add_item(make_item(rng, "hash-1", item_id="second"))
        assert refused.value.item_id == "first"
        assert store.get("second") is None
        assert store.add_item(make_item(rng, "hash-1")).item_id == "first"
        assert store.find_content("hash-1") is not None
        assert store.find_content("hash-2") is None
