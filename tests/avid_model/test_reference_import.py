"""Reference checkpoints: a file in the published layout, built here from a state dict, must
give the same vectors after import as an independent forward pass over its raw tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from avid_model import CheckpointError, create_model, load_checkpoint
from avid_model.features import SpectrogramStats
from avid_model.reference import MEMORY_FILE, import_reference

Weights = dict[str, torch.Tensor]
WIDTHS = (64, 64, 128, 256, 512)


def _conv(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    fan_in = 1
    for n in shape[1:]:
        fan_in *= n
    return torch.randn(shape, generator=g) / fan_in**0.5


def _bn(w: Weights, key: str, c: int, g: torch.Generator) -> None:
    w[f"{key}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
    w[f"{key}.bias"] = 0.1 * torch.randn(c, generator=g)
    w[f"{key}.running_mean"] = 0.1 * torch.randn(c, generator=g)
    w[f"{key}.running_var"] = 1 + 0.2 * torch.rand(c, generator=g)
    w[f"{key}.num_batches_tracked"] = torch.tensor(7)


def reference_weights(widths: tuple[int, ...], g: torch.Generator) -> Weights:
    """Random weights in the reference layout (AVID_SPEC.md §1), keys with ``module.``."""
    w: Weights = {}
    v = "video_model"
    w[f"{v}.conv1.0.weight"] = _conv((widths[0], 3, 3, 7, 7), g)
    _bn(w, f"{v}.conv1.1", widths[0], g)
    cin = widths[0]
    for stage, cout in zip(range(2, 6), widths[1:], strict=True):
        for block in range(2):
            k = f"{v}.conv{stage}x.{block}"
            c_in = cin if block == 0 else cout
            w[f"{k}.spt_conv1.weight"] = _conv((cout, c_in, 1, 3, 3), g)
            w[f"{k}.tmp_conv1.weight"] = _conv((cout, cout, 3, 1, 1), g)
            w[f"{k}.spt_conv2.weight"] = _conv((cout, cout, 1, 3, 3), g)
            w[f"{k}.tmp_conv2.weight"] = _conv((cout, cout, 3, 1, 1), g)
            for bn in ("spt_bn1", "tmp_bn1", "spt_bn2", "out_bn"):
                _bn(w, f"{k}.{bn}", cout, g)
            if block == 0 and (c_in != cout or stage > 2):
                w[f"{k}.res_conv.weight"] = _conv((cout, c_in, 1, 1, 1), g)
        cin = cout
    a = "audio_model"
    w[f"{a}.conv1.0.weight"] = _conv((widths[0], 1, 7, 7), g)
    _bn(w, f"{a}.conv1.1", widths[0], g)
    cin = widths[0]
    for i, cout in enumerate(widths[1:], start=1):
        w[f"{a}.block{i}.conv1.weight"] = _conv((cout, cin, 3, 3), g)
        w[f"{a}.block{i}.conv2.weight"] = _conv((cout, cout, 3, 3), g)
        _bn(w, f"{a}.block{i}.bn1", cout, g)
        _bn(w, f"{a}.block{i}.bn2", cout, g)
        cin = cout
    for head in ("video_proj", "audio_proj"):
        for idx, (o, i_) in enumerate([(512, widths[-1]), (512, 512), (128, 512)]):
            w[f"{head}.projection.{idx * 2}.weight"] = _conv((o, i_), g)
            w[f"{head}.projection.{idx * 2}.bias"] = 0.01 * torch.randn(o, generator=g)
    return {f"module.{k}": t for k, t in w.items()}


def _bn_eval(x: torch.Tensor, w: Weights, key: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        w[f"{key}.running_mean"],
        w[f"{key}.running_var"],
        w[f"{key}.weight"],
        w[f"{key}.bias"],
        training=False,
        eps=1e-5,
    )


def reference_video(x: torch.Tensor, w: Weights) -> torch.Tensor:
    """The spec's video network written out with functional ops over raw reference keys."""
    p = "module.video_model"
    y = F.conv3d(x, w[f"{p}.conv1.0.weight"], stride=(1, 2, 2), padding=(1, 3, 3))
    y = F.relu(_bn_eval(y, w, f"{p}.conv1.1"))
    y = F.max_pool3d(y, (1, 3, 3), (1, 2, 2), (0, 1, 1))
    for stage in range(2, 6):
        for block in range(2):
            k = f"{p}.conv{stage}x.{block}"
            s = 2 if (stage > 2 and block == 0) else 1
            res = y
            if f"{k}.res_conv.weight" in w:
                res = F.conv3d(y, w[f"{k}.res_conv.weight"], stride=s)
            z = F.conv3d(y, w[f"{k}.spt_conv1.weight"], stride=(1, s, s), padding=(0, 1, 1))
            z = F.relu(_bn_eval(z, w, f"{k}.spt_bn1"))
            z = F.conv3d(z, w[f"{k}.tmp_conv1.weight"], stride=(s, 1, 1), padding=(1, 0, 0))
            z = F.relu(_bn_eval(z, w, f"{k}.tmp_bn1"))
            z = F.conv3d(z, w[f"{k}.spt_conv2.weight"], padding=(0, 1, 1))
            z = F.relu(_bn_eval(z, w, f"{k}.spt_bn2"))
            z = F.conv3d(z, w[f"{k}.tmp_conv2.weight"], padding=(1, 0, 0))
            y = F.relu(_bn_eval(z + res, w, f"{k}.out_bn"))
    return _head(y.amax(dim=(2, 3, 4)), w, "module.video_proj")


def reference_audio(x: torch.Tensor, w: Weights) -> torch.Tensor:
    p = "module.audio_model"
    y = F.relu(
        _bn_eval(F.conv2d(x, w[f"{p}.conv1.0.weight"], stride=2, padding=3), w, f"{p}.conv1.1")
    )
    for i, s in zip(range(1, 5), (2, 2, 2, 1), strict=True):
        k = f"{p}.block{i}"
        y = F.relu(
            _bn_eval(F.conv2d(y, w[f"{k}.conv1.weight"], stride=s, padding=1), w, f"{k}.bn1")
        )
        y = F.relu(_bn_eval(F.conv2d(y, w[f"{k}.conv2.weight"], padding=1), w, f"{k}.bn2"))
    return _head(y.amax(dim=(2, 3)), w, "module.audio_proj")


def _head(x: torch.Tensor, w: Weights, p: str) -> torch.Tensor:
    x = F.relu(F.linear(x, w[f"{p}.projection.0.weight"], w[f"{p}.projection.0.bias"]))
    x = F.relu(F.linear(x, w[f"{p}.projection.2.weight"], w[f"{p}.projection.2.bias"]))
    return F.normalize(F.linear(x, w[f"{p}.projection.4.weight"], w[f"{p}.projection.4.bias"]))


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Weights]:
    g = torch.Generator().manual_seed(1)
    weights = reference_weights(WIDTHS, g)
    n = 50
    bank = F.normalize(torch.randn(n, 128, generator=g), dim=1)
    criterion = {
        "nce_average.view1_mem": bank,
        "nce_average.view2_mem": bank.flip(0),
        "criterion.avg_exp_score": torch.tensor(0.0123),
        "nce_average.positive_set": torch.randint(0, n, (n, 32), generator=g),
    }
    path = tmp_path_factory.mktemp("ref") / "checkpoint.pth.tar"
    torch.save({"epoch": 30, "model": weights, "optimizer": {}, "train_criterion": criterion}, path)
    return path, weights


@torch.inference_mode()
def test_imported_reference_gives_the_reference_vectors(
    reference_file: tuple[Path, Weights], tmp_path: Path
) -> None:
    src, weights = reference_file
    meta = import_reference(src, tmp_path / "ckpt")
    assert meta["model"]["name"] == "avid-r2p1d18"
    model = load_checkpoint(tmp_path / "ckpt")
    g = torch.Generator().manual_seed(2)
    video = torch.randn(2, 3, 8, 112, 112, generator=g)
    audio = torch.randn(2, 1, 200, 257, generator=g)
    torch.testing.assert_close(
        model.encode_video(video), reference_video(video, weights), atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        model.encode_audio(audio), reference_audio(audio, weights), atol=1e-5, rtol=1e-4
    )


def test_import_keeps_memory_banks_and_z(
    reference_file: tuple[Path, Weights], tmp_path: Path
) -> None:
    src, _ = reference_file
    meta = import_reference(src, tmp_path / "ckpt")
    assert meta["extra"]["memory"] == ["audio", "positive_set", "video", "z"]
    memory = load_file(str(tmp_path / "ckpt" / MEMORY_FILE))
    assert memory["video"].shape == memory["audio"].shape == (50, 128)
    assert memory["positive_set"].shape == (50, 32)
    assert float(memory["z"]) == pytest.approx(0.0123)


def test_import_records_given_spectrogram_stats(
    reference_file: tuple[Path, Weights], tmp_path: Path
) -> None:
    src, _ = reference_file
    stats = SpectrogramStats(mean=torch.linspace(-50, 0, 257), std=torch.full((257,), 12.0))
    import_reference(src, tmp_path / "ckpt", spectrogram_stats=stats)
    model = load_checkpoint(tmp_path / "ckpt")
    torch.testing.assert_close(model.spectrogram_stats.mean, stats.mean)
    torch.testing.assert_close(model.spectrogram_stats.std, stats.std)


class Payload:
    """An arbitrary Python object: weights_only loading must refuse to build it."""


def test_a_pickled_object_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "evil.pth.tar"
    torch.save({"model": {"x": Payload()}}, src)
    with pytest.raises(CheckpointError, match="weights_only"):
        import_reference(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_reference_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "plain.pth.tar"
    torch.save({"state": torch.zeros(1)}, src)
    with pytest.raises(CheckpointError, match="no 'model'"):
        import_reference(src, tmp_path / "out")
    torch.save({"model": {"module.classifier.weight": torch.zeros(1)}}, src)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        import_reference(src, tmp_path / "out")


def test_tiny_width_reference_maps_to_the_tiny_config(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(3)
    weights = reference_weights((16, 16, 32, 64, 128), g)
    # The tiny registered model has hidden 128, the reference layout above hidden 512: so the
    # importer must fall back to an inferred configuration rather than a wrong registered one.
    src = tmp_path / "tiny.pth.tar"
    torch.save({"epoch": 1, "model": weights}, src)
    meta = import_reference(src, tmp_path / "ckpt")
    assert meta["model"]["name"] == "avid-imported"
    assert tuple(meta["model"]["video_widths"]) == (16, 16, 32, 64, 128)
    assert create_model("avid-tiny").config.head_hidden == 128
