"""``POST /embed/batch`` with each file's own id and metadata (``ids``, ``metadatas``: JSON
lists aligned with the files), over the real app: each file its own result or error, and
lists that do not fit the files refused whole before anything is saved or embedded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.batch_fields import batch_fields
from services.errors import InvalidInput
from tests.services.conftest import Media, SettingsFactory, service_settings
from tests.services.test_api import assert_error


@pytest.fixture(scope="module")
def empty_client(
    checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """An app that every request below refuses: it stays empty."""
    data_dir = tmp_path_factory.mktemp("batch-refused")
    with TestClient(create_app(service_settings(checkpoint_dir, data_dir))) as client:
        yield client


def parts(*paths: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]


def test_each_file_gets_its_own_id_and_metadata(
    make_settings: SettingsFactory, media: Media
) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        files = parts(media.videos[0], media.wav, media.text_file, media.videos[2])
        form = {
            "ids": json.dumps(["clip-a", "tone-b", "notes-c", None]),
            "metadatas": json.dumps(
                [{"label": "dog"}, {"label": "cat", "set": "own"}, {"label": "x"}, None]
            ),
            "metadata": json.dumps({"set": "all"}),
        }
        response = client.post("/embed/batch", files=files, data=form)
        assert response.status_code == 200, response.text
        entries = response.json()["results"]
        assert [e["status"] for e in entries] == [200, 200, 422, 200]
        assert [e["file_name"] for e in entries] == [
            "video_0.mp4",
            "tone.wav",
            "notes.txt",
            "video_2.mp4",
        ]
        assert entries[0]["result"]["id"] == "clip-a"
        assert entries[1]["result"]["id"] == "tone-b"
        assert entries[2]["error"]["code"] == "unreadable"
        random_id = entries[3]["result"]["id"]
        assert random_id not in ("clip-a", "tone-b", "notes-c")
        items = {i["id"]: i for i in client.get("/items").json()["items"]}
        assert set(items) == {"clip-a", "tone-b", random_id}
        assert items["clip-a"]["metadata"] == {"set": "all", "label": "dog"}
        assert items["clip-a"]["kind"] == "video"
        assert items["tone-b"]["metadata"] == {"set": "own", "label": "cat"}  # its own wins
        assert items["tone-b"]["kind"] == "audio"
        assert items[random_id]["metadata"] == {"set": "all"}  # null: the shared metadata
        # A file's id already holding other content: that file's own 409, the others stored.
        again = client.post(
            "/embed/batch",
            files=parts(media.videos[1], media.short_video),
            data={"ids": '["clip-a", "short-d"]'},
        )
        assert again.status_code == 200, again.text
        first, second = again.json()["results"]
        assert (first["status"], first["error"]["code"]) == (409, "conflict")
        assert "clip-a" in first["error"]["message"]
        assert (second["status"], second["result"]["id"]) == (200, "short-d")
        assert client.get("/items").json()["total"] == 4


@pytest.mark.parametrize(
    ("form", "status", "code", "words"),
    [
        ({"ids": '["a"]'}, 422, "invalid_batch", ("ids has 1 entries for 2 files",)),
        ({"metadatas": '[{"a": 1}, {}, {}]'}, 422, "invalid_batch", ("metadatas has 3",)),
        ({"ids": '["a", '}, 422, "invalid_batch", ("ids is not valid JSON",)),
        ({"ids": '{"a": 1}'}, 422, "invalid_batch", ("ids must be a JSON list",)),
        ({"ids": '["a", "a"]'}, 422, "invalid_batch", ("ids[1]", "also ids[0]")),
        ({"ids": '["a", "../b"]'}, 422, "invalid_batch", ("ids[1]", "'../b'")),
        ({"ids": '["a", 7]'}, 422, "invalid_batch", ("ids[1]",)),
        ({"metadatas": "[{}, [1]]"}, 422, "invalid_batch", ("metadatas[1]", "list")),
        ({"metadatas": "[NaN, {}]"}, 422, "invalid_batch", ("NaN",)),
        (
            {"metadatas": json.dumps([{}, {"big": "x" * 70_000}])},
            413,
            "too_large",
            ("metadatas[1]", "over the limit"),
        ),
        ({"metadata": "[1]", "ids": '["a", "b"]'}, 422, "invalid_metadata", ()),
    ],
)
def test_lists_that_do_not_fit_the_files_are_refused_before_anything_is_stored(
    empty_client: TestClient,
    media: Media,
    form: dict[str, str],
    status: int,
    code: str,
    words: tuple[str, ...],
) -> None:
    response = empty_client.post(
        "/embed/batch", files=parts(media.short_video, media.wav), data=form
    )
    assert_error(response, status, code, *words)
    assert empty_client.get("/items").json()["total"] == 0
    state = empty_client.app.state.services  # type: ignore[attr-defined]
    media_dir = state.settings.media_dir
    assert not media_dir.exists() or not any(media_dir.iterdir())  # no file was saved


def test_batch_fields_alone() -> None:
    fields = batch_fields(2, None, None, '{"a": 1}')
    assert [(f.item_id, f.metadata) for f in fields] == [(None, '{"a": 1}')] * 2
    merged = batch_fields(2, '["x", null]', '[{"b": 2}, {"a": 3}]', '{"a": 1}')
    parsed: list[tuple[str | None, Any]] = [
        (f.item_id, json.loads(f.metadata or "{}")) for f in merged
    ]
    assert parsed == [("x", {"a": 1, "b": 2}), (None, {"a": 3})]
    with pytest.raises(InvalidInput, match="ids has 0 entries for 2 files"):
        batch_fields(2, "[]", None, None)
