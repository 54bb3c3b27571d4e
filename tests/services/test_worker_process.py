"""The worker's parts in this process: ``avid worker``'s command line, the lazily loaded
model, the task body, precision; and an API whose broker does not answer."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from avid_model.cli import main
from avid_model.errors import MediaTooLongError
from avid_model.inference import InferenceSettings
from avid_model.media import MediaLimits
from services.api.app import create_app
from services.embedding import LocalEmbeddingBackend
from services.settings import Settings, get_settings
from services.worker.messages import RemoteMediaError, SharedPathError, decode_embedding
from services.worker.model import WorkerModel
from services.worker.tasks import embed_media
from tests.services.conftest import Media, SettingsFactory, service_settings
from tests.services.test_api import assert_error, total, upload

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No AVID_BROKER_URL, and ``get_settings`` read afresh (and forgotten afterwards)."""
    monkeypatch.delenv("AVID_BROKER_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_avid_worker_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--concurrency", "--checkpoint", "--data-dir", "--loglevel", "--broker-url"):
        assert option in out


@pytest.mark.usefixtures("clean_environment")
def test_avid_worker_reports_setting_errors(
    checkpoint_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ([], "no broker: set AVID_BROKER_URL"),
        (["--broker-url", "amqp://guest@rabbit//"], "redis:// or rediss://"),
        (["--broker-url", UNREACHABLE_BROKER, "--checkpoint", str(tmp_path)], "avid.json"),
    ]
    for options, message in cases:
        assert main(["worker", "--checkpoint", str(checkpoint_dir), *options]) == 2
        err = capsys.readouterr().err
        assert err.startswith("avid worker: error: ")
        assert message in err


@pytest.mark.usefixtures("clean_environment")
def test_avid_worker_options_override_the_settings(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.worker import process as worker_module

    monkeypatch.setenv("AVID_BROKER_URL", UNREACHABLE_BROKER)
    monkeypatch.setenv("AVID_WORKER_CONCURRENCY", "5")
    calls: list[tuple[Settings, dict[str, object]]] = []

    def run_worker(settings: Settings, **options: object) -> int:
        calls.append((settings, options))
        return 0

    monkeypatch.setattr(worker_module, "run_worker", run_worker)
    assert main(["worker", "--checkpoint", str(checkpoint_dir), "--data-dir", str(tmp_path)]) == 0
    assert main(["worker", "--checkpoint", str(checkpoint_dir), "--concurrency", "3"]) == 0
    (first, options), (second, _) = calls
    assert (first.broker_url, first.data_dir, first.worker_concurrency) == (
        UNREACHABLE_BROKER,
        tmp_path,
        5,
    )
    assert options == {"pool": "threads", "loglevel": "info"}
    assert second.worker_concurrency == 3


def test_worker_model_loads_once_on_first_use(checkpoint_dir: Path, tmp_path: Path) -> None:
    loads: list[Settings] = []

    def load(settings: Settings) -> LocalEmbeddingBackend:
        loads.append(settings)
        return LocalEmbeddingBackend.from_settings(settings)

    model = WorkerModel(service_settings(checkpoint_dir, tmp_path), load)
    assert not model.is_loaded
    assert loads == []  # nothing at construction: a pool could still fork
    with ThreadPoolExecutor(4) as pool:
        backends = list(pool.map(lambda _: model.backend(), range(8)))
    assert len(loads) == 1
    assert all(b is backends[0] for b in backends)
    model.close()
    assert not model.is_loaded
    assert not backends[0].batcher.is_running


def test_task_body_embeds_a_shared_file_with_the_apis_hop_and_limits(
    checkpoint_dir: Path, media: Media, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "media").mkdir(parents=True)
    shutil.copy(media.videos[0], data_dir / "media" / "short.mp4")  # 3 s
    model = WorkerModel(service_settings(checkpoint_dir, data_dir, window_hop=1.0))
    try:
        limits = asdict(MediaLimits())
        message = embed_media(model, "media/short.mp4", ["video"], 0.5, limits)
        embedding, version = decode_embedding(message)
        assert version == model.backend().model_version
        assert embedding.starts == [0.0, 0.5, 1.0]  # the task's hop, not the worker's
        assert embedding.video is not None
        assert embedding.video.shape == (3, 128)
        assert embedding.audio is None  # not asked for
        progress: list[float] = []
        embed_media(model, "media/short.mp4", ["audio"], 1.0, limits, progress.append)
        assert progress[-1] == 1.0
        too_long = asdict(MediaLimits(max_duration_s=1.0))  # the API's limits, not the worker's
        with pytest.raises(RemoteMediaError) as raised:
            embed_media(model, "media/short.mp4", ["video"], 1.0, too_long)
        assert isinstance(raised.value.to_media_error(), MediaTooLongError)
        with pytest.raises(SharedPathError):
            embed_media(model, "../outside.mp4", ["video"], 1.0, limits)
        with pytest.raises(ValueError, match="modalities"):
            embed_media(model, "media/short.mp4", ["pictures"], 1.0, limits)
    finally:
        model.close()


def test_auto_precision_is_bf16_on_a_cuda_device_that_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Workers run ``LocalEmbeddingBackend.from_settings``: ``AVID_PRECISION`` (default auto)."""
    assert Settings().precision == "auto"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert InferenceSettings().resolve_dtype(torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert InferenceSettings().resolve_dtype(torch.device("cuda")) == torch.float32


@pytest.mark.gpu
def test_worker_model_runs_bf16_on_the_gpu(checkpoint_dir: Path, tmp_path: Path) -> None:
    model = WorkerModel(service_settings(checkpoint_dir, tmp_path, device="auto"))
    try:
        embedder = model.backend().embedder
        assert embedder.device.type == "cuda"
        assert embedder.dtype == torch.bfloat16
    finally:
        model.close()


def test_unreachable_broker_is_not_ready_and_embeds_answer_503(
    make_settings: SettingsFactory, media: Media
) -> None:
    settings = make_settings(broker_url=UNREACHABLE_BROKER, task_timeout_s=5.0)
    with TestClient(create_app(settings)) as client:  # starts: the broker is not needed yet
        ready = client.get("/readyz")
        assert ready.status_code == 503
        checks = {"model": True, "index": True, "broker": False, "workers": 0}
        assert ready.json()["checks"] == checks
        assert "avid_broker_queue_tasks NaN" in client.get("/metrics").text
        response = client.post("/embed/audio", files=upload(media.wav))
        assert_error(response, 503, "unavailable", "broker")
        assert total(client) == 0
        assert list(settings.media_dir.iterdir()) == []  # the upload is not kept
