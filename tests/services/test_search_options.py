"""Search beyond the cross-modal default, over the real app: metadata filters (equality,
``in`` and number ranges), item kind (sound files or video soundtracks), a score threshold,
vectors in the answer, search by a raw vector, and video->video / audio->audio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from tests.services.conftest import Media, service_settings
from tests.services.test_api import assert_error, embed, results, upload


@pytest.fixture(scope="module")
def stored(
    checkpoint_dir: Path, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("search-options")
    with TestClient(create_app(service_settings(checkpoint_dir, data_dir))) as client:
        ids = {
            "v0": embed(client, "video", media.videos[0], metadata={"label": "dog", "n": 1})["id"],
            "v1": embed(client, "video", media.videos[1], metadata={"label": "cat", "n": 2})["id"],
            "v2": embed(
                client, "video", media.videos[2], metadata={"label": "dog", "tags": {"x": True}}
            )["id"],
            "wav": embed(client, "audio", media.wav, metadata={"label": "dog"})["id"],
        }
        yield client, ids


def search(client: TestClient, path: Path, **form: Any) -> list[dict[str, Any]]:
    data = {k: json.dumps(v) if k == "filter" else str(v) for k, v in form.items()}
    return results(client.post("/search", files=upload(path), data=data))


def test_metadata_filters_equality_in_and_nested_fields(
    stored: tuple[TestClient, dict[str, str]], media: Media
) -> None:
    client, ids = stored

    def found(flt: Any) -> set[str]:
        return {h["id"] for h in search(client, media.wav, target="video", filter=flt)}

    assert found({}) == {ids["v0"], ids["v1"], ids["v2"]}
    assert found({"label": "dog"}) == {ids["v0"], ids["v2"]}
    assert found({"label": {"in": ["cat", "bird"]}}) == {ids["v1"]}
    assert found({"label": "dog", "n": 1}) == {ids["v0"]}
    assert found({"n": 1.0}) == {ids["v0"]}
    assert found({"n": True}) == set()  # JSON true is not the number 1
    assert found({"tags.x": True}) == {ids["v2"]}
    assert found({"missing": None}) == set()
    # number ranges (Qdrant's range): a missing field or a non-number is in no range
    assert found({"n": {"gt": 1}}) == {ids["v1"]}
    assert found({"n": {"gte": 1}}) == {ids["v0"], ids["v1"]}
    assert found({"n": {"lt": 2}}) == {ids["v0"]}
    assert found({"n": {"gte": 0.5, "lte": 1.5}}) == {ids["v0"]}
    assert found({"n": {"in": [1, 2], "gt": 1}}) == {ids["v1"]}
    assert found({"label": {"gte": 0}}) == set()  # strings are in no range
    assert found({"label": "dog", "n": {"lte": 10}}) == {ids["v0"]}
    stored_query = client.get("/search", params={"audio": ids["wav"], "filter": '{"n": 2}'})
    assert {h["id"] for h in results(stored_query)} == {ids["v1"]}


def test_bad_filters_are_422_naming_the_problem(
    stored: tuple[TestClient, dict[str, str]], media: Media
) -> None:
    client, _ = stored
    for raw, words in (
        ("{nope", "not valid JSON"),
        ("[1]", "JSON object"),
        ('{"label": {"like": 1}}', "'like' is not a condition"),
        ('{"label": {}}', '"gte"'),
        ('{"n": {"gt": "a"}}', "'gt' takes a finite number"),
        ('{"n": {"lt": true}}', "'lt' takes a finite number"),
        ('{"label": {"in": []}}', "list of 1 to"),
        ('{"label": {"in": [[1]]}}', "strings, numbers"),
        ('{"label": [1]}', "use 'in'"),
        ('{"": 1}', "field name"),
        ("[" * 50 + "]" * 50, "nested"),
    ):
        response = client.post(
            "/search", files=upload(media.wav), data={"target": "video", "filter": raw}
        )
        assert_error(response, 422, "invalid_filter", words)
    assert_error(client.get("/search", params={"audio": "x", "filter": "{"}), 422, "invalid_filter")


def test_item_kind_chooses_sound_files_or_video_soundtracks(
    stored: tuple[TestClient, dict[str, str]], media: Media
) -> None:
    client, ids = stored
    everything = search(client, media.videos[0], target="audio")
    assert {h["id"] for h in everything} == set(ids.values())
    files = search(client, media.videos[0], target="audio", item_kind="audio")
    assert [h["id"] for h in files] == [ids["wav"]]
    tracks = search(client, media.videos[0], target="audio", item_kind="video", filter={})
    assert {h["id"] for h in tracks} == {ids["v0"], ids["v1"], ids["v2"]}
    assert all(h["kind"] == "video" for h in tracks)


def test_score_threshold_keeps_the_hits_at_or_above_it(
    stored: tuple[TestClient, dict[str, str]], media: Media
) -> None:
    client, _ = stored
    hits = search(client, media.videos[0], target="audio")
    scores = sorted(h["score"] for h in hits)
    threshold = (scores[1] + scores[2]) / 2
    kept = search(client, media.videos[0], target="audio", score_threshold=threshold)
    assert [h["id"] for h in kept] == [h["id"] for h in hits if h["score"] >= threshold]
    assert len(kept) == 2
    refused = client.post(
        "/search", files=upload(media.wav), data={"target": "video", "score_threshold": "2"}
    )
    assert_error(refused, 422, "invalid_request", "score_threshold")


def test_search_by_vector_with_vectors_scores_are_their_dot_products(
    stored: tuple[TestClient, dict[str, str]], media: Media
) -> None:
    client, ids = stored
    query = embed(client, "audio", media.wav, store=False)["audio"]
    body = {"vector": [2 * x for x in query], "target": "video", "k": 5, "with_vectors": True}
    response = client.post("/search/vector", json=body)
    hits = results(response)
    assert {h["id"] for h in hits} == {ids["v0"], ids["v1"], ids["v2"]}
    for hit in hits:
        vector = np.asarray(hit["vector"])
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
        assert float(vector @ np.asarray(query)) == pytest.approx(hit["score"], abs=1e-4)
    filtered = client.post("/search/vector", json={**body, "filter": {"label": "cat"}})
    assert [h["id"] for h in results(filtered)] == [ids["v1"]]
    plain = results(client.post("/search/vector", json={**body, "with_vectors": False}))
    assert all(h["vector"] is None for h in plain)
    short = client.post("/search/vector", json={**body, "vector": [1.0, 0.0]})
    assert_error(short, 422, "bad_vector", "128 numbers")
    zero = client.post("/search/vector", json={**body, "vector": [0.0] * 128})
    assert_error(zero, 422, "bad_vector", "not all zero")


def test_video_to_video_and_audio_to_audio(
    stored: tuple[TestClient, dict[str, str]], media: Media
) -> None:
    client, ids = stored
    same = search(client, media.videos[0], target="video", query="video")
    assert same[0]["id"] == ids["v0"]  # its own pictures: the same vectors
    assert same[0]["score"] == pytest.approx(1.0, abs=1e-3)
    sound = search(client, media.wav, target="audio", query="audio", item_kind="audio")
    assert sound[0]["id"] == ids["wav"]
    assert sound[0]["score"] == pytest.approx(1.0, abs=1e-3)
    by_item = results(client.get("/search", params={"video": ids["v0"], "target": "video"}))
    assert {h["id"] for h in by_item} == {ids["v1"], ids["v2"]}
    no_pictures = client.post(
        "/search", files=upload(media.wav), data={"target": "video", "query": "video"}
    )
    assert_error(no_pictures, 422, "no_stream", "no video stream")
