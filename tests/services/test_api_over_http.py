"""The API additions over real HTTP: one ``avid serve`` on a socket (a subprocess on a free
port) with a full key, a read-only key and CORS origins set, spoken to with httpx. The same
features are tested in depth in-process (test_item_media, test_search_options,
test_batch_fields, test_access); here each is checked once through uvicorn and a socket:
``POST /embed/batch``, ``/items/{id}/media`` with Range (206, 416), ``/items/{id}/poster``,
search with a ``filter`` (``in``), ``score_threshold``, ``item_kind``, video->video and
audio->audio, the read-only key, and CORS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services.conftest import Media
from tests.services.server_process import ServerProcess

WRITE = "http-key"
READ = "http-read-key"
ORIGIN = "http://page.example"


@pytest.fixture(scope="module")
def server(
    checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("http-server")
    env = {"AVID_API_KEY": WRITE, "AVID_READ_API_KEY": READ, "AVID_CORS_ORIGINS": ORIGIN}
    process = ServerProcess(checkpoint_dir, root / "data", root / "serve.log", **env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": WRITE}, timeout=60) as client:
        yield client


def part(path: Path) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (path.name, path.read_bytes(), "application/octet-stream"))


@pytest.fixture(scope="module")
def stored(http: httpx.Client, media: Media) -> dict[str, str]:
    """``POST /embed/batch`` of three files and a text file (its own 422): their ids."""
    files = [part(p) for p in (media.videos[0], media.videos[1], media.wav, media.text_file)]
    metadatas = [{"label": "dog"}, {"label": "cat"}, {"label": "dog"}, None]
    response = http.post("/embed/batch", files=files, data={"metadatas": json.dumps(metadatas)})
    assert response.status_code == 200, response.text
    entries = response.json()["results"]
    assert [e["status"] for e in entries] == [200, 200, 200, 422]
    assert entries[3]["error"]["code"] == "unreadable"
    ids = [e["result"]["id"] for e in entries[:3]]
    assert http.get("/items").json()["total"] == 3
    return dict(zip(("v0", "v1", "wav"), ids, strict=True))


def search(http: httpx.Client, path: Path, **form: Any) -> list[Any]:
    data = {k: json.dumps(v) if k == "filter" else str(v) for k, v in form.items()}
    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
    response = http.post("/search", files=files, data=data)
    assert response.status_code == 200, response.text
    hits: list[Any] = response.json()["results"]
    return hits


def test_batch_items_keep_their_metadata_name_and_size(
    http: httpx.Client, stored: dict[str, str], media: Media
) -> None:
    item = http.get(f"/items/{stored['v1']}").json()
    assert item["metadata"] == {"label": "cat"}
    assert (item["file_name"], item["size_bytes"]) == (
        "video_1.mp4",
        media.videos[1].stat().st_size,
    )
    assert http.get(f"/items/{stored['wav']}").json()["kind"] == "audio"


def test_media_with_range_and_the_poster(
    server: ServerProcess, http: httpx.Client, stored: dict[str, str], media: Media
) -> None:
    data = media.videos[0].read_bytes()
    url = f"/items/{stored['v0']}/media"
    whole = http.get(url)
    assert (whole.status_code, whole.content) == (200, data)
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = http.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert http.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    poster = http.get(f"/items/{stored['v0']}/poster", params={"at": 1.0})
    assert poster.status_code == 200
    assert poster.headers["content-type"] == "image/jpeg"
    assert poster.content[:3] == b"\xff\xd8\xff"  # a JPEG's start of image
    wave = http.get(f"/items/{stored['wav']}/poster")
    assert (wave.status_code, wave.headers["content-type"]) == (200, "image/jpeg")
    assert httpx.get(server.url + url).status_code == 401  # behind the same auth


def test_search_filter_threshold_item_kind_and_same_modality(
    http: httpx.Client, stored: dict[str, str], media: Media
) -> None:
    videos = {stored["v0"], stored["v1"]}
    assert {h["id"] for h in search(http, media.wav, target="video")} == videos
    chosen = search(http, media.wav, target="video", filter={"label": {"in": ["cat", "bird"]}})
    assert [h["id"] for h in chosen] == [stored["v1"]]
    assert search(http, media.wav, target="video", filter={"label": "dog"})[0]["id"] == stored["v0"]

    same = search(http, media.videos[0], target="video", query="video")
    assert same[0]["id"] == stored["v0"]
    assert same[0]["score"] == pytest.approx(1.0, abs=1e-3)
    scores = sorted(h["score"] for h in same)
    assert len(scores) == 2
    threshold = (scores[0] + scores[1]) / 2
    kept = search(http, media.videos[0], target="video", query="video", score_threshold=threshold)
    assert [h["id"] for h in kept] == [stored["v0"]]
    assert search(http, media.wav, target="video", score_threshold=1.0) == []

    sound = search(http, media.wav, target="audio", query="audio", item_kind="audio")
    assert [h["id"] for h in sound] == [stored["wav"]]
    assert sound[0]["score"] == pytest.approx(1.0, abs=1e-3)
    tracks = search(http, media.videos[0], target="audio", item_kind="video")
    assert {h["id"] for h in tracks} == videos
    both = search(http, media.videos[0], target="audio")
    assert {h["id"] for h in both} == {*videos, stored["wav"]}


def test_the_read_only_key_searches_and_reads_but_cannot_write(
    http: httpx.Client, stored: dict[str, str], media: Media
) -> None:
    for headers in ({"X-API-Key": READ}, {"Authorization": f"Bearer {READ}"}):
        with httpx.Client(base_url=http.base_url, headers=headers, timeout=60) as reader:
            assert reader.get("/items").json()["total"] == 3
            assert reader.get(f"/items/{stored['v0']}/media").status_code == 200
            assert reader.get(f"/items/{stored['v0']}/poster").status_code == 200
            hits = search(reader, media.wav, target="video")
            assert {h["id"] for h in hits} == {stored["v0"], stored["v1"]}
            assert reader.get("/info").json()["access"] == "read"
            files = {"file": ("tone.wav", media.wav.read_bytes(), "application/octet-stream")}
            refused = [
                reader.post("/embed/audio", files=files),
                reader.post("/embed/batch", files=[part(media.short_video)]),
                reader.patch(f"/items/{stored['v0']}", json={"metadata": {"x": 1}}),
                reader.delete(f"/items/{stored['v0']}"),
            ]
            for response in refused:
                assert response.status_code == 403, response.text
                assert response.json()["error"]["code"] == "forbidden"
    assert http.get(f"/items/{stored['v0']}").json()["metadata"] == {"label": "dog"}
    assert http.get("/items").json()["total"] == 3


def test_cors_answers_the_configured_origin_only(
    http: httpx.Client, stored: dict[str, str]
) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    answer = http.options("/search", headers=preflight)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in answer.headers["access-control-allow-headers"].lower()
    media = http.get(
        f"/items/{stored['v0']}/media", headers={"Origin": ORIGIN, "Range": "bytes=0-9"}
    )
    assert media.status_code == 206
    assert media.headers["access-control-allow-origin"] == ORIGIN
    assert "content-range" in media.headers["access-control-expose-headers"].lower()
    stranger = http.get("/items", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers
    refused = http.options("/search", headers={**preflight, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in refused.headers
