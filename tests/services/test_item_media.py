"""What an item keeps for people, over the real app: the original file name and size (on the
item and in its search results), the kept file with HTTP Range (``/items/{id}/media``), a
poster frame (``/items/{id}/poster``), and ``PATCH /items/{id}`` of the metadata."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services import item_media, media_files
from services.api.app import create_app
from services.uploads import sanitised_name
from tests.services.conftest import Media, SettingsFactory, frames, service_settings
from tests.services.test_api import assert_error, results


def post(client: TestClient, kind: str, path: Path, name: str, **form: str) -> dict[str, Any]:
    response = client.post(
        f"/embed/{kind}",
        files={"file": (name, path.read_bytes(), "application/octet-stream")},
        data=form,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def client(
    checkpoint_dir: Path, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    data_dir = tmp_path_factory.mktemp("item-media")
    with TestClient(create_app(service_settings(checkpoint_dir, data_dir))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def video_id(client: TestClient, media: Media) -> str:
    body = post(client, "video", media.videos[1], "Holiday clip (1).mp4", metadata='{"a": 1}')
    return str(body["id"])


@pytest.fixture(scope="module")
def wav_id(client: TestClient, media: Media) -> str:
    return str(post(client, "audio", media.wav, "C:\\Users\\me\\tone.WAV")["id"])


def test_items_keep_the_sanitised_file_name_and_the_size(
    client: TestClient, media: Media, video_id: str, wav_id: str
) -> None:
    video = client.get(f"/items/{video_id}").json()
    assert video["file_name"] == "Holiday clip (1).mp4"
    assert video["size_bytes"] == media.videos[1].stat().st_size
    wav = client.get(f"/items/{wav_id}").json()
    assert wav["file_name"] == "tone.WAV"  # the directories of a Windows path are dropped
    assert wav["size_bytes"] == media.wav.stat().st_size
    odd = post(client, "audio", media.short_video, "../../etc/\x1bpasswd.mp4")
    assert client.get(f"/items/{odd['id']}").json()["file_name"] == "passwd.mp4"
    assert sanitised_name("a/b\nc\x00.wav") == "bc.wav"
    assert sanitised_name("x" * 300 + ".wav") == "x" * 255
    assert sanitised_name("dir/..") is None
    listed = {i["id"]: i for i in client.get("/items").json()["items"]}
    assert listed[video_id]["file_name"] == "Holiday clip (1).mp4"
    query = {"file": ("q.wav", media.wav.read_bytes(), "application/octet-stream")}
    hits = {
        h["id"]: h for h in results(client.post("/search", files=query, data={"target": "video"}))
    }
    named = (hits[video_id]["file_name"], hits[video_id]["size_bytes"])
    assert named == ("Holiday clip (1).mp4", media.videos[1].stat().st_size)
    query = {"file": ("q.mp4", media.videos[1].read_bytes(), "application/octet-stream")}
    sounds = results(client.post("/search", files=query, data={"target": "audio"}))
    sound = {h["id"]: h for h in sounds}[wav_id]
    assert (sound["file_name"], sound["size_bytes"]) == ("tone.WAV", media.wav.stat().st_size)


def test_media_is_the_kept_file_with_range_support(
    client: TestClient, media: Media, video_id: str, wav_id: str
) -> None:
    data = media.videos[1].read_bytes()
    whole = client.get(f"/items/{video_id}/media")
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-disposition"].startswith("inline")
    part = client.get(f"/items/{video_id}/media", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = client.get(f"/items/{video_id}/media", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206
    assert tail.content == data[-50:]
    outside = client.get(f"/items/{video_id}/media", headers={"Range": f"bytes={len(data)}-"})
    assert outside.status_code == 416
    sound = client.get(f"/items/{wav_id}/media")
    assert sound.headers["content-type"] == "audio/wav"
    assert sound.content == media.wav.read_bytes()
    assert_error(client.get("/items/nope/media"), 404, "not_found", "nope")


def test_poster_is_a_jpeg_of_the_picture_at_the_time_or_of_the_waveform(
    client: TestClient, video_id: str, wav_id: str
) -> None:
    response = client.get(f"/items/{video_id}/poster", params={"at": 1.5})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    assert image.size == (64, 64)
    # videos[1] was written from frames(3, seed=1): its frame at 1.5 s, up to JPEG/H.264 loss
    expected = frames(3, 1)[24].astype(float)
    got = np.asarray(image.convert("RGB"), dtype=float)
    assert np.abs(got - expected).mean() < 20
    other = np.asarray(
        Image.open(io.BytesIO(client.get(f"/items/{video_id}/poster").content)), dtype=float
    )
    assert np.abs(other - frames(3, 1)[24].astype(float)).mean() < 40  # the middle: 1.5 s too
    # A sound's picture is its waveform: media.wav is a steady tone at 0.4 of full scale.
    wave = Image.open(io.BytesIO(client.get(f"/items/{wav_id}/poster").content)).convert("L")
    assert wave.size == (320, 120)
    pixels = np.asarray(wave, dtype=float)
    inked = pixels[:, 10:310] < 180  # bars are dark blue on a near-white background
    rows = np.flatnonzero(inked.mean(axis=1) > 0.9)
    assert rows.min() == pytest.approx(60 - 0.4 * 60, abs=4)
    assert rows.max() == pytest.approx(60 + 0.4 * 60, abs=4)
    assert not inked[:15].any()
    assert not inked[-15:].any()
    assert_error(client.get(f"/items/{video_id}/poster", params={"at": -1}), 422, "invalid_request")
    assert_error(client.get("/items/nope/poster"), 404, "not_found")


def test_posters_are_decoded_once_then_cached_and_go_with_the_item(
    make_settings: SettingsFactory, media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    for name in ("poster_jpeg", "waveform_jpeg"):
        real = getattr(item_media, name)

        def counting(path: Path, *args: Any, _real: Any = real, _name: str = name) -> bytes:
            decoded.append(_name)
            jpeg: bytes = _real(path, *args)
            return jpeg

        monkeypatch.setattr(item_media, name, counting)
    settings = make_settings()
    with TestClient(create_app(settings)) as client:
        video = client.get(f"/items/{post(client, 'video', media.short_video, 'a.mp4')['id']}")
        sound = client.get(f"/items/{post(client, 'audio', media.wav, 'tone.wav')['id']}")
        video, sound = video.json(), sound.json()
        first = client.get(f"/items/{video['id']}/poster")
        again = client.get(f"/items/{video['id']}/poster")
        assert first.status_code == again.status_code == 200
        assert first.content == again.content
        at = client.get(f"/items/{video['id']}/poster", params={"at": 0.5}).content
        assert at == client.get(f"/items/{video['id']}/poster", params={"at": 0.5}).content
        waves = [client.get(f"/items/{sound['id']}/poster").content for _ in range(2)]
        assert waves[0] == waves[1]
        assert decoded == ["poster_jpeg", "poster_jpeg", "waveform_jpeg"]  # once each

        video_posters = media_files.poster_dir(settings.media_dir, video["content_hash"])
        assert (video_posters / "video-1000.jpg").read_bytes() == first.content  # mid-file
        assert (video_posters / "video-500.jpg").read_bytes() == at
        sound_posters = media_files.poster_dir(settings.media_dir, sound["content_hash"])
        assert (sound_posters / "audio.jpg").read_bytes() == waves[0]

        assert client.delete(f"/items/{video['id']}").status_code == 204
        assert not video_posters.exists()
        assert sound_posters.exists()
        assert client.get(f"/items/{video['id']}/poster").status_code == 404
    # Posters of content no item holds (a crash mid-delete) are swept at the next start.
    (settings.media_dir / media_files.POSTER_DIR / ("0" * 64)).mkdir()
    with TestClient(create_app(settings)):
        assert sound_posters.exists()
        assert not (settings.media_dir / media_files.POSTER_DIR / ("0" * 64)).exists()


def test_patch_merges_into_the_metadata_and_search_shows_it(
    client: TestClient, media: Media, video_id: str
) -> None:
    def patch(body: Any) -> Any:
        raw = body if isinstance(body, str) else json.dumps(body)
        return client.patch(f"/items/{video_id}", content=raw)

    first = patch({"metadata": {"label": "dog", "nested": {"x": 1, "y": 2}}})
    assert first.status_code == 200, first.text
    assert first.json()["metadata"] == {"a": 1, "label": "dog", "nested": {"x": 1, "y": 2}}
    second = patch({"metadata": {"a": None, "nested": {"y": None, "z": [1]}}})
    assert second.json()["metadata"] == {"label": "dog", "nested": {"x": 1, "z": [1]}}
    assert client.get(f"/items/{video_id}").json()["metadata"] == second.json()["metadata"]
    query = {"file": ("q.wav", media.videos[1].read_bytes(), "application/octet-stream")}
    hits = results(client.post("/search", files=query, data={"target": "video"}))
    assert {h["id"]: h["metadata"] for h in hits}[video_id] == second.json()["metadata"]
    assert_error(patch({"labels": {}}), 422, "invalid_metadata", "metadata")
    assert_error(patch({"metadata": [1]}), 422, "invalid_metadata")
    assert_error(patch("{not json"), 422, "invalid_metadata", "not valid JSON")
    assert_error(patch("[" * 100 + "]" * 100), 422, "invalid_metadata", "nested")
    assert_error(patch({"metadata": {"big": "x" * 70_000}}), 413, "too_large")
    missing = client.patch("/items/nope", content='{"metadata": {}}')
    assert_error(missing, 404, "not_found", "nope")
    assert client.get(f"/items/{video_id}").json()["metadata"] == second.json()["metadata"]


def test_cursor_pages_do_not_shift_when_earlier_items_go(
    make_settings: SettingsFactory, media: Media
) -> None:
    with TestClient(create_app(make_settings())) as client:
        for path, kind in (
            (media.wav, "audio"),
            (media.short_video, "video"),
            (media.silent_video, "video"),
            (media.videos[0], "video"),
            (media.videos[1], "audio"),
        ):
            post(client, kind, path, path.name)
        everything = [i["id"] for i in client.get("/items").json()["items"]]
        assert len(everything) == 5
        first = client.get("/items", params={"limit": 2}).json()
        assert [i["id"] for i in first["items"]] == everything[:2]
        assert first["next_cursor"] is not None
        # An earlier item goes: the cursor page still starts after the last one seen.
        assert client.delete(f"/items/{everything[0]}").status_code == 204
        second = client.get("/items", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [i["id"] for i in second["items"]] == everything[2:4]
        assert second["total"] == 4
        third = client.get("/items", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        assert [i["id"] for i in third["items"]] == everything[4:]
        assert third["next_cursor"] is None
        videos = client.get("/items", params={"kind": "video", "limit": 1}).json()
        after = client.get(
            "/items", params={"kind": "video", "limit": 5, "cursor": videos["next_cursor"]}
        ).json()
        assert [i["kind"] for i in after["items"]] == ["video", "video"]
        assert after["next_cursor"] is None
        for params, code in (
            ({"cursor": "abc"}, "invalid_cursor"),
            ({"cursor": "-1"}, "invalid_cursor"),
            ({"cursor": "3", "offset": 1}, "invalid_request"),
        ):
            assert_error(client.get("/items", params=params), 422, code)


def test_embed_batch_answers_each_file_on_its_own(
    make_settings: SettingsFactory, media: Media
) -> None:
    settings = make_settings(sync_max_seconds=2.5)
    with TestClient(create_app(settings)) as client:
        parts = [
            ("files", ("short.mp4", media.short_video.read_bytes(), "video/mp4")),
            ("files", ("tone.wav", media.wav.read_bytes(), "application/octet-stream")),
            ("files", ("notes.txt", media.text_file.read_bytes(), "text/plain")),
            ("files", ("silent.mp4", media.silent_video.read_bytes(), "video/mp4")),
            ("files", ("short-again.mp4", media.short_video.read_bytes(), "video/mp4")),
        ]
        response = client.post("/embed/batch", files=parts, data={"metadata": '{"b": 1}'})
        assert response.status_code == 200, response.text
        entries = response.json()["results"]
        assert [e["index"] for e in entries] == [0, 1, 2, 3, 4]
        assert [e["status"] for e in entries] == [200, 202, 422, 202, 200]
        short, wav, text, silent, again = entries
        assert short["result"]["kind"] == "video"
        assert again["result"]["id"] == short["result"]["id"]  # the same bytes: one item
        assert text["error"]["code"] == "unreadable"
        assert "notes.txt" in text["error"]["message"]
        assert text["result"] is None
        for job in (wav, silent):
            state = None
            for _ in range(200):
                state = client.get(job["job"]["status_url"]).json()
                if state["state"] in ("done", "failed"):
                    break
                time.sleep(0.05)
            assert state is not None
            assert state["state"] == "done", state
        wav_item = client.get(
            f"/items/{client.get(wav['job']['status_url']).json()['result']['id']}"
        )
        assert wav_item.json()["kind"] == "audio"  # by its suffix
        assert wav_item.json()["metadata"] == {"b": 1}
        assert client.get("/items").json()["total"] == 3
        bad_meta = client.post("/embed/batch", files=parts[:1], data={"metadata": "[1]"})
        assert_error(bad_meta, 422, "invalid_metadata")
        as_audio = client.post("/embed/batch", files=parts[3:4], data={"kind": "audio"})
        assert as_audio.json()["results"][0]["error"]["code"] == "no_stream"
        none = client.post("/embed/batch", data={"kind": "video"})
        assert_error(none, 422, "invalid_request", "files")
