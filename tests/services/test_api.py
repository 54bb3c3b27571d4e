"""The HTTP API end to end: the real app (lifespan included), real FAISS, real media files."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from avid_model.command_args import CommandError
from avid_model.errors import MediaTooLongError
from services import cli as service_cli
from services import settings as settings_module
from services.api.app import create_app
from services.api.errors import job_error
from services.api.server import GracefulServer
from services.jobs import JobNotFound, Progress, RunnerClosed, ThreadJobRunner
from services.settings import Settings, StartupError, get_settings
from tests.services.conftest import Media, SettingsFactory, service_settings

RESULT_KEYS = {
    "id",
    "kind",
    "duration",
    "has_video",
    "has_audio",
    "model_version",
    "video",
    "audio",
    "windows",
}


def upload(path: Path, name: str | None = None) -> dict[str, Any]:
    return {"file": (name or path.name, path.read_bytes(), "application/octet-stream")}


def embed(
    client: TestClient, kind: str, path: Path, expect: int = 200, **form: Any
) -> dict[str, Any]:
    data = {k: (json.dumps(v) if k == "metadata" else str(v).lower()) for k, v in form.items()}
    if "id" in form:
        data["id"] = form["id"]
    response = client.post(f"/embed/{kind}", files=upload(path), data=data)
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


def total(client: TestClient) -> int:
    response = client.get("/items", params={"limit": 1})
    assert response.status_code == 200
    n: int = response.json()["total"]
    return n


def assert_unit(vector: list[float]) -> None:
    assert len(vector) == 128
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)


def assert_error(response: Any, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    for word in words:
        assert word in body["error"]["message"]


def results(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["results"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for hit in hits:
        assert set(hit) >= {"id", "score", "start", "end", "metadata"}
        assert 0 <= hit["start"] < hit["end"]
        assert -1.0001 <= hit["score"] <= 1.0001
    return hits


# ----------------------------------------------------------------------------- a shared app


@pytest.fixture(scope="module")
def client(
    checkpoint_dir: Path, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """One app for the tests that only add to its index (and check what they add)."""
    data_dir = tmp_path_factory.mktemp("shared-app")
    settings = service_settings(checkpoint_dir, data_dir, max_upload_bytes=2_000_000)
    with TestClient(create_app(settings)) as test_client:
        embed(test_client, "video", media.videos[0], metadata={"name": "first"})
        yield test_client


def test_embed_video_returns_item_vectors_and_stores_the_item(
    client: TestClient, media: Media
) -> None:
    body = embed(client, "video", media.videos[1], windows=True, metadata={"tag": "b"})
    assert set(body) == RESULT_KEYS
    assert body["kind"] == "video"
    assert body["has_video"]
    assert body["has_audio"]
    assert body["duration"] == pytest.approx(3.0, abs=0.1)
    assert_unit(body["video"])
    assert_unit(body["audio"])
    windows = body["windows"]
    assert [w["start"] for w in windows] == [0.0, 1.0]  # 2 s windows, each inside the 3 s file
    for w in windows:
        assert w["end"] > w["start"]
        assert_unit(w["video"])
        assert_unit(w["audio"])
    item = client.get(f"/items/{body['id']}").json()
    assert item["kind"] == "video"
    assert item["metadata"] == {"tag": "b"}
    assert item["model_version"] == body["model_version"]
    assert item["n_video_windows"] == item["n_audio_windows"] == 2


def test_same_file_twice_is_one_item(client: TestClient, media: Media) -> None:
    first = embed(client, "video", media.videos[1])
    before = total(client)
    again = embed(client, "video", media.videos[1])
    assert again["id"] == first["id"]
    assert total(client) == before


def test_video_without_audio_gives_video_vectors_only(client: TestClient, media: Media) -> None:
    body = embed(client, "video", media.silent_video, windows=True)
    assert body["has_audio"] is False
    assert body["audio"] is None
    assert_unit(body["video"])
    assert all(w["audio"] is None for w in body["windows"])
    assert client.get(f"/items/{body['id']}").json()["n_audio_windows"] == 0


def test_embed_audio_from_a_wav_and_from_a_video_track(client: TestClient, media: Media) -> None:
    wav = embed(client, "audio", media.wav)
    assert wav["kind"] == "audio"
    assert wav["video"] is None
    assert_unit(wav["audio"])
    track = embed(client, "audio", media.short_video)
    assert track["video"] is None
    assert track["has_video"] is False
    assert_unit(track["audio"])
    assert client.get(f"/items/{track['id']}").json()["n_video_windows"] == 0


def test_store_false_embeds_without_storing(client: TestClient, media: Media) -> None:
    before = total(client)
    body = embed(client, "video", media.videos[2], store=False)
    assert body["id"] is None
    assert_unit(body["video"])
    assert total(client) == before


def test_explicit_id_is_used(client: TestClient, media: Media) -> None:
    body = embed(client, "audio", media.videos[2], id="my-sound.1")
    assert body["id"] == "my-sound.1"
    assert client.get("/items/my-sound.1").json()["kind"] == "audio"
    response = client.post("/embed/audio", files=upload(media.wav), data={"id": "my-sound.1"})
    assert_error(response, 409, "conflict", "my-sound.1")


def test_items_are_paged(client: TestClient, media: Media) -> None:
    n = total(client)
    assert n >= 2
    page = client.get("/items", params={"offset": 1, "limit": 1}).json()
    assert (page["total"], page["offset"], page["limit"]) == (n, 1, 1)
    assert len(page["items"]) == 1
    everything = client.get("/items", params={"limit": 1000}).json()["items"]
    assert page["items"][0] == everything[1]
    videos = client.get("/items", params={"kind": "video", "limit": 1000}).json()
    assert {i["kind"] for i in videos["items"]} == {"video"}
    assert videos["total"] == sum(i["kind"] == "video" for i in everything)


BAD_SEARCH_PARAMS: list[dict[str, Any]] = [
    {},
    {"audio": "a", "video": "b"},
    {"audio": "a", "k": 0},
    {"audio": "a", "k": "many"},
    {"audio": "a", "at": -1},
]


@pytest.mark.parametrize("params", BAD_SEARCH_PARAMS)
def test_bad_search_parameters_are_422(client: TestClient, params: dict[str, Any]) -> None:
    assert_error(client.get("/search", params=params), 422, "invalid_request")


def test_error_table_leaves_the_index_unchanged(client: TestClient, media: Media) -> None:
    """Each bad request gets a JSON error naming the problem, and stores nothing."""
    before = total(client)
    audio_item = embed(client, "audio", media.wav)["id"]
    before = total(client)
    bad_json, not_object = {"metadata": "{oops"}, {"metadata": "[1, 2]"}
    cases: list[tuple[str, dict[str, Any], dict[str, Any], int, str, str]] = [
        ("/embed/video", upload(media.text_file), {}, 422, "unreadable", "notes.txt"),
        ("/embed/video", upload(media.truncated_mp4), {}, 422, "corrupt", "truncated.mp4"),
        ("/embed/audio", {"file": ("empty.wav", b"")}, {}, 422, "empty", "empty"),
        ("/embed/video", upload(media.wav), {}, 422, "no_stream", "use /embed/audio"),
        ("/embed/audio", upload(media.silent_video), {}, 422, "no_stream", "no audio stream"),
        ("/embed/video", upload(media.videos[2]), bad_json, 422, "invalid_metadata", "JSON"),
        ("/embed/video", upload(media.videos[2]), not_object, 422, "invalid_metadata", "object"),
        ("/embed/video", upload(media.videos[2]), {"id": "../etc"}, 422, "invalid_request", "id"),
        ("/embed/video", {}, {}, 422, "invalid_request", "file"),
        ("/search", upload(media.wav), {"target": "pictures"}, 422, "invalid_request", "target"),
        ("/search", upload(media.silent_video), {"target": "video"}, 422, "no_stream", "audio"),
        ("/search", upload(media.text_file), {"target": "video"}, 422, "unreadable", ""),
    ]  # fmt: skip
    for path, files, data, status, code, words in cases:
        response = client.post(path, files=files, data=data)
        assert_error(response, status, code, words)
        assert total(client) == before, (path, code)
    gets = [
        ("/items/nope", 404, "not_found", "nope"),
        ("/search?audio=nope", 404, "not_found", "nope"),
        (f"/search?video={audio_item}", 422, "no_window", "no video windows"),
        (f"/search?audio={audio_item}&at=99", 422, "no_window", "t=99"),
        ("/jobs/nope", 404, "not_found", "nope"),
        ("/no/such/route", 404, "not_found", ""),
    ]
    for url, status, code, words in gets:
        assert_error(client.get(url), status, code, words)
    assert_error(client.delete("/items/nope"), 404, "not_found", "nope")
    assert total(client) == before
    # Nothing of the rejected uploads stays on disk.
    settings: Settings = client.app.state.services.settings  # type: ignore[attr-defined]
    assert list(settings.scratch_dir.iterdir()) == []
    assert not list(settings.media_dir.glob(".upload-*"))


def test_size_and_duration_limits_are_413(make_settings: SettingsFactory, media: Media) -> None:
    settings = make_settings(max_upload_bytes=150_000, max_duration_s=2.5)
    assert media.wav.stat().st_size < 150_000
    with TestClient(create_app(settings)) as client:
        ok = embed(client, "video", media.short_video)
        assert ok["duration"] == pytest.approx(2.0, abs=0.1)
        before = total(client)
        too_long = client.post("/embed/audio", files=upload(media.wav))
        assert_error(too_long, 413, "too_long", "limit")
        oversized = client.post("/embed/video", files={"file": ("big.mp4", b"\0" * 150_001)})
        assert_error(oversized, 413, "too_large", "limit")
        announced = client.post(
            "/embed/video",
            content=b"x" * 10,
            headers={
                "content-type": "multipart/form-data; boundary=x",
                "content-length": "9999999",
            },
        )
        assert announced.status_code == 413
        assert announced.json()["error"]["code"] == "too_large"
        assert total(client) == before


# ----------------------------------------------------------------------------- the scenario


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_full_scenario_search_delete_restart(
    make_settings: SettingsFactory, media: Media, index_backend: str, database_url: str | None
) -> None:
    """The whole service on each index backend (Milvus: Milvus Lite in the data dir) and each
    item database (SQLite in the data dir, or PostgreSQL)."""
    settings = make_settings(index_backend=index_backend, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        videos = [
            embed(client, "video", path, metadata={"n": i})["id"]
            for i, path in enumerate(media.videos)
        ]
        sound = embed(client, "audio", media.wav, metadata={"n": "wav"})["id"]
        assert total(client) == 4

        by_sound = results(client.get("/search", params={"audio": sound, "k": 10}))
        assert [h["id"] for h in by_sound] != []
        assert {h["id"] for h in by_sound} == set(videos)  # every video, nothing else
        assert {h["kind"] for h in by_sound} == {"video"}

        by_video = results(client.get("/search", params={"video": videos[0]}))
        assert {h["id"] for h in by_video} == {videos[1], videos[2], sound}  # not itself
        assert results(client.get("/search", params={"video": videos[0], "k": 1})) == by_video[:1]
        at = results(client.get("/search", params={"video": videos[0], "at": 1.5}))
        assert {h["id"] for h in at} == {videos[1], videos[2], sound}

        # A query file finds what the stored item with the same content finds.
        posted = results(client.post("/search", files=upload(media.wav), data={"target": "video"}))
        assert [h["id"] for h in posted] == [h["id"] for h in by_sound]
        for a, b in zip(posted, by_sound, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=2e-2)
        posted_video = client.post(
            "/search", files=upload(media.videos[0]), data={"target": "audio", "k": 10}
        )
        assert videos[0] in {h["id"] for h in results(posted_video)}  # nothing excluded here

        assert client.delete(f"/items/{videos[2]}").status_code == 204
        assert client.get(f"/items/{videos[2]}").status_code == 404
        assert client.delete(f"/items/{videos[2]}").status_code == 404
        after_delete = results(client.get("/search", params={"audio": sound}))
        assert {h["id"] for h in after_delete} == {videos[0], videos[1]}
        by_video = results(client.get("/search", params={"video": videos[0]}))
        assert total(client) == 3

    with TestClient(create_app(settings)) as client:
        assert total(client) == 3
        assert results(client.get("/search", params={"audio": sound})) == after_delete
        assert results(client.get("/search", params={"video": videos[0]})) == by_video
    assert (settings.index_dir / "milvus.db").exists() == (index_backend == "milvus")
    assert (settings.index_dir / "items.sqlite3").exists() == (database_url is None)


def test_long_file_becomes_a_background_job(make_settings: SettingsFactory, media: Media) -> None:
    settings = make_settings(sync_max_seconds=1.0)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/embed/video", files=upload(media.videos[0]), data={"windows": "true", "id": "job-1"}
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert set(accepted) == {"job_id", "status_url"}
        assert response.headers["location"] == accepted["status_url"]
        deadline = time.monotonic() + 60
        while True:
            job = client.get(accepted["status_url"]).json()
            assert job["state"] in ("queued", "running", "done"), job
            assert 0.0 <= job["progress"] <= 1.0
            if job["state"] == "done" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert job["state"] == "done"
        assert job["progress"] == 1.0
        assert job["error"] is None
        result = job["result"]
        assert set(result) == RESULT_KEYS
        assert result["id"] == "job-1"
        assert_unit(result["video"])
        assert len(result["windows"]) == 2
        assert client.get("/items/job-1").json()["n_video_windows"] == 2

        # A job whose file fails part-way reports the error and stores nothing.
        failing = client.post("/embed/video", files=upload(media.wav))
        assert_error(failing, 422, "no_stream")  # checked before any job is made
        assert total(client) == 1


# ----------------------------------------------------------------------------- auth, probes


def test_api_key_guards_everything_but_health_and_docs(
    make_settings: SettingsFactory, media: Media
) -> None:
    settings = make_settings(api_key="s3cret")
    with TestClient(create_app(settings)) as client:
        for url in ("/healthz", "/readyz", "/docs", "/openapi.json"):
            assert client.get(url).status_code == 200, url
        for url in ("/items", "/items/x", "/search?audio=x", "/jobs/x", "/metrics"):
            assert_error(client.get(url), 401, "unauthorized")
            wrong = client.get(url, headers={"Authorization": "Bearer nope"})
            assert_error(wrong, 401, "unauthorized", "invalid")
        assert_error(client.delete("/items/x"), 401, "unauthorized")
        no_key = client.post("/embed/video", files=upload(media.videos[0]))
        assert_error(no_key, 401, "unauthorized")
        assert no_key.headers["www-authenticate"] == "Bearer"
        basic = client.get("/items", headers={"Authorization": "Basic s3cret"})
        assert_error(basic, 401, "unauthorized")
        good = {"Authorization": "Bearer s3cret"}
        assert client.get("/items", headers=good).json()["total"] == 0
        embedded = client.post("/embed/audio", files=upload(media.wav), headers=good)
        assert embedded.status_code == 200
        assert client.get("/metrics", headers=good).status_code == 200


def test_health_readiness_and_metrics(client: TestClient, media: Media) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"model": True, "index": True}}
    embed(client, "video", media.videos[0])
    client.get("/items/nope")
    text = client.get("/metrics").text
    assert 'avid_http_requests_total{method="POST",route="/embed/video",status="200"}' in text
    assert 'avid_http_requests_total{method="GET",route="/items/{item_id}",status="404"}' in text
    assert 'avid_http_request_duration_seconds_count{method="POST",route="/embed/video"}' in text
    assert 'avid_batch_clips_count{modality="video"}' in text
    assert 'avid_batch_clips_count{modality="audio"}' in text
    assert "avid_batcher_queue_clips 0.0" in text
    assert 'avid_index_vectors{modality="video"}' in text
    assert "avid_index_items" in text


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/embed/video", "/embed/audio", "/search", "/items", "/items/{item_id}"):
        assert path in paths
    assert "/jobs/{job_id}" in paths


# ----------------------------------------------------------------------------- start-up


def test_missing_default_checkpoint_fails_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(settings_module, "DEFAULT_CHECKPOINT", tmp_path / "no-model")
    settings = Settings(checkpoint=None, data_dir=tmp_path / "data")
    app = create_app(settings)  # nothing is loaded yet
    with (
        pytest.raises(StartupError, match=r"no model checkpoint at .*no-model.*AVID_CHECKPOINT"),
        TestClient(app),
    ):
        pass


def test_settings_come_from_the_overridable_dependency(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(window_hop=0.5)
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as client:
        assert client.app.state.services.settings is settings  # type: ignore[attr-defined]
        assert client.get("/readyz").status_code == 200


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVID_PORT", "9001")
    monkeypatch.setenv("AVID_API_KEY", "")
    monkeypatch.setenv("AVID_INDEX_TYPE", "hnsw")
    settings = Settings()
    assert (settings.port, settings.api_key, settings.index_type) == (9001, None, "hnsw")
    monkeypatch.setenv("AVID_INDEX_TYPE", "annoy")
    with pytest.raises(ValueError, match="index_type"):
        Settings()


# ----------------------------------------------------------------------------- avid serve


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avid")
    service_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_avid_serve_runs_uvicorn_with_the_options(
    monkeypatch: pytest.MonkeyPatch, checkpoint_dir: Path, tmp_path: Path
) -> None:
    calls: list[uvicorn.Config] = []
    monkeypatch.setattr(GracefulServer, "run", lambda self: calls.append(self.config))
    monkeypatch.setattr(settings_module, "get_settings", lambda: Settings(shutdown_grace_s=2.5))
    args = serve_parser().parse_args(
        [
            "serve",
            "--port",
            "8123",
            "--checkpoint",
            str(checkpoint_dir),
            "--data-dir",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 0
    assert (calls[0].host, calls[0].port) == ("127.0.0.1", 8123)
    assert calls[0].timeout_graceful_shutdown == 3  # the grace, rounded up to whole seconds
    settings = service_cli.settings_from_args(args)
    assert (settings.checkpoint, settings.data_dir) == (checkpoint_dir, tmp_path)


def test_avid_serve_reports_user_errors(tmp_path: Path) -> None:
    parser = serve_parser()
    missing = parser.parse_args(["serve", "--checkpoint", str(tmp_path / "nope")])
    with pytest.raises(CommandError, match="no model checkpoint"):
        missing.func(missing)
    bad_port = parser.parse_args(["serve", "--port", "70000", "--checkpoint", str(tmp_path)])
    with pytest.raises(CommandError, match="port"):
        bad_port.func(bad_port)


# ----------------------------------------------------------------------------- the job runner


def test_job_runner_reports_progress_results_and_errors() -> None:
    release = threading.Event()

    def handler(payload: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
        progress(0.5)
        if payload["fail"]:
            raise MediaTooLongError("lasts too long", path="x.mp4")
        release.wait(5)
        return {"echo": payload["n"]}

    runner = ThreadJobRunner(handler, workers=1, describe_error=job_error)
    ok = runner.submit({"fail": False, "n": 1})
    queued = runner.submit({"fail": True, "n": 2})
    deadline = time.monotonic() + 5
    while runner.status(ok.id).progress < 0.5 and time.monotonic() < deadline:
        time.sleep(0.01)
    running = runner.status(ok.id)
    assert (running.state, running.progress) == ("running", 0.5)
    assert runner.status(queued.id).state == "queued"
    assert runner.counts() == {"queued": 1, "running": 1, "done": 0, "failed": 0}
    release.set()
    while runner.status(queued.id).state != "failed" and time.monotonic() < deadline:
        time.sleep(0.01)
    done, failed = runner.status(ok.id), runner.status(queued.id)
    assert (done.state, done.progress, done.result, done.error) == ("done", 1.0, {"echo": 1}, None)
    assert failed.state == "failed"
    assert failed.error == {"code": "too_long", "message": "x.mp4: lasts too long"}
    with pytest.raises(JobNotFound):
        runner.status("nope")
    runner.close()
    with pytest.raises(RunnerClosed, match="shutting down"):
        runner.submit({})


def test_job_runner_shutdown_lets_running_jobs_finish_and_fails_queued_ones() -> None:
    gate = threading.Event()

    def handler(payload: Mapping[str, Any], progress: Progress) -> dict[str, Any]:
        gate.wait(5)
        return {}

    runner = ThreadJobRunner(handler, workers=1)
    running, waiting = runner.submit({}), runner.submit({})
    deadline = time.monotonic() + 5
    while runner.status(running.id).state != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    threading.Timer(0.2, gate.set).start()
    runner.close()
    assert runner.status(running.id).state == "done"
    assert runner.status(waiting.id).error == {
        "code": "shutdown",
        "message": "the service stopped first",
    }
