"""The distributed mode end to end: the real app with ``AVID_BROKER_URL`` set, real ``avid
worker`` processes, the Redis at 127.0.0.1:6379 (DB 11). Answers must match the embedded mode.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from avid_model.errors import CorruptMediaError
from avid_model.media import probe
from avid_model.media_writer import write_media
from services.api.app import create_app
from services.embedding import BackendUnavailable
from services.settings import Settings
from services.worker.backend import CeleryEmbeddingBackend
from tests.services.celery_worker_process import WorkerProcess, empty_redis_db, worker_launcher
from tests.services.conftest import FPS, RATE, Media, frames, service_settings, tone
from tests.services.test_api import embed, results, total, upload

SCORE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Deployment:
    """A worker on ``data_dir`` (the storage it shares with the API) and the test Redis DB."""

    broker_url: str
    checkpoint: Path
    data_dir: Path
    worker: WorkerProcess

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = {"broker_url": self.broker_url, "task_timeout_s": 60.0}
        return service_settings(self.checkpoint, self.data_dir, **{**base, **overrides})


@pytest.fixture(scope="module")
def deployment(
    checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One worker on DB 11 for the module (it boots while a test runs its embedded half)."""
    root = tmp_path_factory.mktemp("celery-mode")
    data_dir = root / "data"
    with (
        empty_redis_db(11) as broker_url,
        worker_launcher(broker_url, checkpoint_dir, data_dir, root) as launcher,
    ):
        yield Deployment(broker_url, checkpoint_dir, data_dir, launcher.start())


@pytest.fixture(scope="module")
def truncated_mkv(media: Media) -> Path:
    """Headers intact (the API's probe accepts it), data cut: decoding fails in the worker."""
    path = media.wav.parent / "truncated.mkv"
    if not path.exists():
        whole = media.wav.parent / "whole.mkv"
        write_media(whole, video=frames(3, 3), fps=FPS, audio=tone(3, 330.0), sample_rate=RATE)
        data = whole.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    probe(path)
    return path


def run_scenario(client: TestClient, media: Media) -> dict[str, Any]:
    """Embed 3 videos and a wav, then search both ways, with stored items and with files."""
    embedded = [
        embed(client, "video", path, id=f"video-{i}", windows=True)
        for i, path in enumerate(media.videos)
    ]
    embedded.append(embed(client, "audio", media.wav, id="sound", windows=True))
    assert total(client) == 4
    return {
        "embedded": embedded,
        "audio->video": results(client.get("/search", params={"audio": "sound", "k": 10})),
        "video->audio": results(client.get("/search", params={"video": "video-0", "k": 10})),
        "wav file->video": results(
            client.post("/search", files=upload(media.wav), data={"target": "video"})
        ),
        "video file->audio": results(
            client.post("/search", files=upload(media.videos[1]), data={"target": "audio"})
        ),
    }


def assert_same_vectors(a: list[float] | None, b: list[float] | None) -> None:
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert a == pytest.approx(b, abs=SCORE_TOLERANCE)


def assert_same_answers(local: dict[str, Any], remote: dict[str, Any]) -> None:
    for mine, theirs in zip(local["embedded"], remote["embedded"], strict=True):
        for key in ("id", "kind", "duration", "has_video", "has_audio", "model_version"):
            assert mine[key] == theirs[key], key
        assert_same_vectors(mine["video"], theirs["video"])
        assert_same_vectors(mine["audio"], theirs["audio"])
        for w_mine, w_theirs in zip(mine["windows"], theirs["windows"], strict=True):
            assert (w_mine["start"], w_mine["end"]) == (w_theirs["start"], w_theirs["end"])
            assert_same_vectors(w_mine["video"], w_theirs["video"])
            assert_same_vectors(w_mine["audio"], w_theirs["audio"])
    for name in ("audio->video", "video->audio", "wav file->video", "video file->audio"):
        hits_mine, hits_theirs = local[name], remote[name]
        assert [h["id"] for h in hits_mine] == [h["id"] for h in hits_theirs], name
        for hit_mine, hit_theirs in zip(hits_mine, hits_theirs, strict=True):
            assert hit_mine["score"] == pytest.approx(hit_theirs["score"], abs=SCORE_TOLERANCE)
            assert (hit_mine["start"], hit_mine["end"]) == (hit_theirs["start"], hit_theirs["end"])


@pytest.mark.redis
def test_same_scenario_same_answers_embedded_and_with_a_worker(
    deployment: Deployment, checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    with TestClient(create_app(service_settings(checkpoint_dir, tmp_path / "local"))) as client:
        local = run_scenario(client, media)
    deployment.worker.wait_ready()
    with TestClient(create_app(deployment.settings())) as client:
        remote = run_scenario(client, media)
    assert {h["id"] for h in remote["audio->video"]} == {"video-0", "video-1", "video-2"}
    assert_same_answers(local, remote)
    log = deployment.worker.log()
    assert "avid.embed_media" in log  # the worker did embed them
    # Task ids and timings in the log, never the vectors (Celery logs return values).
    assert " embedded, " in log
    assert "float32" not in log
    assert max(len(line) for line in log.splitlines()) < 1000


@pytest.mark.redis
def test_bad_media_gives_the_same_error_both_ways(
    deployment: Deployment,
    checkpoint_dir: Path,
    media: Media,
    truncated_mkv: Path,
    tmp_path: Path,
) -> None:
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("/embed/video", upload(truncated_mkv), {}),  # fails decoding: in the worker
        ("/embed/audio", upload(truncated_mkv), {}),
        ("/search", upload(truncated_mkv), {"target": "audio"}),
        ("/embed/video", upload(media.text_file), {}),  # fails the API's probe
    ]

    def answers(settings: Settings) -> list[tuple[int, Any]]:
        with TestClient(create_app(settings)) as client:
            before = total(client)
            out = []
            for path, files, data in requests:
                response = client.post(path, files=files, data=data)
                out.append((response.status_code, response.json()))
            assert total(client) == before
            assert list(settings.scratch_dir.iterdir()) == []
        return out

    local = answers(service_settings(checkpoint_dir, tmp_path / "local"))
    status, body = local[0]
    assert (status, body["error"]["code"]) == (422, "corrupt")
    assert body["error"]["message"].startswith("truncated.mkv: video stream ends at")
    assert answers(deployment.settings()) == local


@pytest.mark.redis
def test_readyz_and_metrics_report_the_broker(deployment: Deployment) -> None:
    deployment.worker.wait_ready()
    with TestClient(create_app(deployment.settings())) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert (body["status"], body["checks"]) == (
            "ready",
            {"model": True, "index": True, "broker": True, "workers": 1},
        )
        version = client.app.state.services.backend.model_version  # type: ignore[attr-defined]
        [worker] = body["workers"]
        assert (worker["model_version"], worker["concurrency"]) == (version, 2)
        assert worker["hostname"].startswith("avid-")
        text = client.get("/metrics").text
        assert "avid_broker_queue_tasks 0.0" in text
        assert f'avid_workers{{model_version="{version}"}} 1.0' in text


@pytest.mark.redis
def test_backend_rebuilds_worker_errors_and_refuses_another_model(
    deployment: Deployment, media: Media, truncated_mkv: Path
) -> None:
    settings = deployment.settings()
    scratch = settings.scratch_dir
    scratch.mkdir(parents=True, exist_ok=True)
    good, bad = scratch / "good.wav", scratch / "bad.mkv"
    shutil.copy(media.wav, good)
    shutil.copy(truncated_mkv, bad)
    backend = CeleryEmbeddingBackend.from_settings(settings)
    try:
        with pytest.raises(CorruptMediaError) as raised:
            backend.embed_file(bad)
        assert raised.value.filename == "bad.mkv"
        assert str(raised.value).startswith("bad.mkv: video stream ends at")

        backend.model_version = "avid-tiny-000000000000"  # as if the API served another model
        with pytest.raises(BackendUnavailable, match="start the workers with the API") as refused:
            backend.embed_file(good, frozenset({"audio"}))
        assert refused.value.code == "worker_model_mismatch"
    finally:
        backend.close()
