from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avid_model import (
    AVIDModel,
    CheckpointError,
    create_model,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from avid_model.checkpoint import META_FILE, WEIGHTS_FILE
from avid_model.features import SpectrogramStats


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, AVIDModel]:
    model = create_model("avid-tiny")
    model.spectrogram_stats = SpectrogramStats(
        mean=torch.linspace(-80, -20, 257), std=torch.linspace(5, 15, 257)
    )
    # Non-default BatchNorm statistics must travel too.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d | torch.nn.BatchNorm2d):
            assert m.running_mean is not None
            m.running_mean.uniform_(-0.5, 0.5)
    save_checkpoint(model, tmp_path / "ckpt", extra={"run": "unit-test"})
    return tmp_path / "ckpt", model


@torch.inference_mode()
def test_round_trip_gives_identical_vectors_and_settings(
    saved: tuple[Path, AVIDModel],
) -> None:
    path, model = saved
    loaded = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert loaded.preprocess == model.preprocess
    torch.testing.assert_close(loaded.spectrogram_stats.mean, model.spectrogram_stats.mean)
    torch.testing.assert_close(loaded.spectrogram_stats.std, model.spectrogram_stats.std)
    model.eval()
    video = torch.randn(2, 3, 8, 112, 112)
    audio = torch.randn(2, 1, 200, 257)
    assert torch.equal(loaded.encode_video(video), model.encode_video(video))
    assert torch.equal(loaded.encode_audio(audio), model.encode_audio(audio))


def test_metadata_carries_version_hash_and_provenance(saved: tuple[Path, AVIDModel]) -> None:
    path, _ = saved
    meta = read_metadata(path)
    assert meta["format_version"] == 1
    assert meta["model"]["name"] == "avid-tiny"
    assert len(meta["spectrogram_stats"]["mean"]) == 257
    assert meta["model_version"] == f"avid-tiny-{meta['content_hash'][:12]}"
    assert meta["extra"] == {"run": "unit-test"}
    assert load_checkpoint(path).model_version == meta["model_version"]


def test_weights_are_safetensors_not_pickle(saved: tuple[Path, AVIDModel]) -> None:
    path, _ = saved
    header_len = int.from_bytes((path / WEIGHTS_FILE).read_bytes()[:8], "little")
    header = json.loads((path / WEIGHTS_FILE).read_bytes()[8 : 8 + header_len])
    assert "video_encoder.conv1.0.weight" in header


def test_content_hash_follows_weights_and_stats(tmp_path: Path) -> None:
    model = create_model("avid-tiny")
    a = save_checkpoint(model, tmp_path / "a")
    b = save_checkpoint(model, tmp_path / "b")
    assert a["content_hash"] == b["content_hash"]  # deterministic
    model.spectrogram_stats = SpectrogramStats(mean=torch.ones(257), std=torch.ones(257))
    c = save_checkpoint(model, tmp_path / "c")
    with torch.no_grad():
        first = model.video_head.projection[0]
        assert isinstance(first, torch.nn.Linear)
        first.bias.add_(1.0)
    d = save_checkpoint(model, tmp_path / "d")
    assert len({a["content_hash"], c["content_hash"], d["content_hash"]}) == 3


def test_damaged_weights_are_detected(saved: tuple[Path, AVIDModel]) -> None:
    path, _ = saved
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_edited_metadata_is_detected(saved: tuple[Path, AVIDModel]) -> None:
    path, _ = saved
    meta = json.loads((path / META_FILE).read_text())
    meta["preprocess"]["crop_size"] = 224
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="content hash"):
        load_checkpoint(path)


def test_other_format_version_and_missing_files(saved: tuple[Path, AVIDModel]) -> None:
    path, _ = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(path.parent / "nowhere")
    meta = json.loads((path / META_FILE).read_text())
    meta["format_version"] = 99
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(path)
    (path / META_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(path)
