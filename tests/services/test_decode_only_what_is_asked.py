"""Decode only what is asked: an audio embedding (or an audio search) of a video file never
decodes its frames, and each upload is probed once (every probe and every decoded stream opens
the file: counted at ``av.open``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient

import avid_model.media
from services.api.app import create_app
from tests.services.conftest import Media, service_settings
from tests.services.test_api import embed, upload


@pytest.fixture(scope="module")
def client(
    checkpoint_dir: Path, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = service_settings(checkpoint_dir, tmp_path_factory.mktemp("decode-app"))
    with TestClient(create_app(settings)) as test_client:
        embed(test_client, "video", media.videos[0], id="stored")
        yield test_client


class Calls:
    def __init__(self) -> None:
        self.opens = 0
        self.video_decodes = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counted = Calls()
    real_open, real_video = av.open, avid_model.media._video_windows

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        counted.opens += 1
        return real_open(*args, **kwargs)

    def counting_video(*args: Any, **kwargs: Any) -> Any:
        counted.video_decodes += 1
        return real_video(*args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    monkeypatch.setattr(avid_model.media, "_video_windows", counting_video)
    return counted


def test_audio_embedding_of_an_mp4_decodes_no_frame_and_probes_once(
    client: TestClient, media: Media, calls: Calls
) -> None:
    body = embed(client, "audio", media.videos[1], store=False)
    assert body["audio"] is not None
    assert body["video"] is None
    assert calls.video_decodes == 0
    assert calls.opens == 2  # one probe, the audio stream


def test_audio_search_by_an_uploaded_video_decodes_no_frame(
    client: TestClient, media: Media, calls: Calls
) -> None:
    # target=video: the file's sound finds videos; its pictures are not needed.
    response = client.post("/search", files=upload(media.videos[1]), data={"target": "video"})
    assert response.status_code == 200, response.text
    assert calls.video_decodes == 0
    assert calls.opens == 2


def test_a_video_embedding_decodes_both_streams_and_probes_once(
    client: TestClient, media: Media, calls: Calls
) -> None:
    body = embed(client, "video", media.videos[2], store=False)
    assert body["video"] is not None
    assert body["audio"] is not None
    assert calls.video_decodes == 1
    assert calls.opens == 3  # one probe, the video stream, the audio stream


def test_an_audio_job_does_not_probe_again(
    checkpoint_dir: Path, media: Media, tmp_path: Path, calls: Calls
) -> None:
    settings = service_settings(checkpoint_dir, tmp_path / "data", sync_max_seconds=0.0)
    with TestClient(create_app(settings)) as client:
        response = client.post("/embed/audio", files=upload(media.videos[1]))
        assert response.status_code == 202, response.text
        url = response.json()["status_url"]
        deadline = time.monotonic() + 60
        while (job := client.get(url).json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.02)
        assert job["state"] == "done", job
    assert calls.video_decodes == 0
    assert calls.opens == 2
