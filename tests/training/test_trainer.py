"""The training loop for real, on a small AV-Digits set: runs, resumes exactly, stops on a
non-finite loss, chains AVID -> CMA, trains the correspondence baseline, exports and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avid_model import load_checkpoint
from avid_model.registry import create_model
from training.config import ConfigError, TrainConfig, build_config
from training.evaluate import evaluate_features, extract_features
from training.export import export_run
from training.run_state import load_run_state
from training.sources import load_records
from training.trainer import NonFiniteLossError, prepare_model, train


def small_config(manifest: Path, out: Path, *overrides: str) -> TrainConfig:
    tree = {
        "model": {"name": "avid-tiny", "crop_size": 32},
        "data": {"manifest": str(manifest), "workers": 0, "stats_clips": 8},
        "loss": {"negatives": 8},
        "optim": {"batch_size": 4, "epochs": 2, "lr": 1e-3},
        "run": {"out_dir": str(out), "device": "cpu", "progress": False, "log_every": 1},
    }
    return build_config(tree, overrides)


def read_log(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_runs_logs_and_checkpoints(avdigits_small: Path, tmp_path: Path) -> None:
    result = train(small_config(avdigits_small, tmp_path / "run"))
    assert result.stopped == "completed"
    assert result.epochs_done == 2
    n_train = len(load_records(avdigits_small, "train"))
    assert result.steps == 2 * (n_train // 4)
    events = read_log(tmp_path / "run")
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == result.steps
    assert all({"loss", "v2a", "a2v", "z", "clips_per_s", "data_wait"} <= set(e) for e in steps)
    waits = [e["data_wait"] for e in steps]
    assert all(isinstance(w, float) and 0.0 <= w <= 1.0 for w in waits), waits
    # Z is estimated on the first batch and then stays fixed (the published recipe).
    assert len({e["z"] for e in steps}) == 1
    state = load_run_state(tmp_path / "run")
    assert state["epoch"] == 2
    assert state["memory"]["video"].shape == (n_train, 128)
    torch.testing.assert_close(state["memory"]["video"].norm(dim=1), torch.ones(n_train))


def test_resume_is_exact(avdigits_small: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    train(small_config(avdigits_small, straight))
    split = tmp_path / "split"
    train(small_config(avdigits_small, split, "optim.epochs=1"))
    result = train(small_config(avdigits_small, split))
    assert result.epochs_done == 2
    a, b = load_run_state(straight), load_run_state(split)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["memory"]["video"], b["memory"]["video"])
    assert a["z"] == b["z"]


def test_time_budget_stops_mid_epoch_and_resumes(avdigits_small: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = train(small_config(avdigits_small, run, "run.max_minutes=0.00001"))
    assert first.stopped == "time budget"
    assert first.steps == 1
    assert load_run_state(run)["batches_done"] == 1
    second = train(small_config(avdigits_small, run))
    assert second.stopped == "completed"
    straight = train(small_config(avdigits_small, tmp_path / "straight"))
    assert second.steps == straight.steps
    a, b = load_run_state(run), load_run_state(tmp_path / "straight")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_non_finite_loss_stops_clearly(avdigits_small: Path, tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match="loss became"):
        train(small_config(avdigits_small, tmp_path / "run", "optim.lr=1e30", "optim.epochs=5"))
    assert any(e["event"] == "stop" for e in read_log(tmp_path / "run"))


def test_cma_starts_from_avid_and_baseline_trains(avdigits_small: Path, tmp_path: Path) -> None:
    avid = tmp_path / "avid"
    train(small_config(avdigits_small, avid, "optim.epochs=1"))
    avid_z = load_run_state(avid)["z"]
    cma = small_config(
        avdigits_small,
        tmp_path / "cma",
        "loss.method=cma",
        f"loss.cma.init_from={avid}",
        "loss.cma.pos_k=2",
        "loss.cma.within_negatives=4",
        "loss.cma.resample_freq=1",
    )
    result = train(cma)
    assert result.stopped == "completed"
    events = read_log(tmp_path / "cma")
    assert sum(e["event"] == "positives" for e in events) == 2  # every epoch
    steps = [e for e in events if e["event"] == "step"]
    assert {"inst_v2a", "pos_v2v", "pos_a2a"} <= set(steps[0])
    assert steps[0]["z"] == pytest.approx(avid_z)  # Z carried over from AVID
    positives = load_run_state(tmp_path / "cma")["memory"]["positive_set"]
    assert positives.shape[1] == 2
    avc = train(small_config(avdigits_small, tmp_path / "avc", "loss.method=avc"))
    assert avc.stopped == "completed"
    assert "avc_accuracy" in [e for e in read_log(tmp_path / "avc") if e["event"] == "step"][-1]


def test_supervised_upper_bound_trains_on_labels(avdigits_small: Path, tmp_path: Path) -> None:
    config = small_config(avdigits_small, tmp_path / "sup", "loss.method=supervised")
    result = train(config)
    assert result.stopped == "completed"
    steps = [e for e in read_log(tmp_path / "sup") if e["event"] == "step"]
    assert {"video_ce", "audio_ce", "video_accuracy", "audio_accuracy"} <= set(steps[0])
    # A fresh classifier over 10 labels starts near ln 10 and the loss is their mean.
    first = {k: float(v) for k, v in steps[0].items() if isinstance(v, float)}
    assert first["loss"] == pytest.approx((first["video_ce"] + first["audio_ce"]) / 2, rel=1e-4)


def test_supervised_refuses_unlabelled_clips(avdigits_small: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in avdigits_small.read_text().splitlines()]
    next(r for r in rows if r["split"] == "train").pop("label")
    for row in rows:
        row["path"] = str(avdigits_small.parent / row["path"])
    manifest = tmp_path / "unlabelled.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="needs a label on every clip"):
        train(small_config(manifest, tmp_path / "sup", "loss.method=supervised"))


def test_preprocessing_overrides_reach_the_model() -> None:
    tree = {"model": {"name": "avid-tiny", "crop_size": 48, "clip_frames": 16, "fps": 8}}
    model = prepare_model(build_config(tree))
    assert (model.preprocess.crop_size, model.preprocess.clip_frames) == (48, 16)
    assert model.preprocess.fps == 8.0
    assert model.preprocess.clip_seconds == 2.0
    assert create_model("avid-tiny").preprocess.clip_frames == 8  # the registry is untouched


def test_spectrum_dropout_reaches_the_audio_tower_and_needs_a_spectrum_path() -> None:
    tree = {"model": {"name": "avid-summary-spectrum", "spectrum_dropout": 0.3}}
    model = prepare_model(build_config(tree))
    assert model.audio_encoder.path_dropout == 0.3
    assert create_model("avid-summary-spectrum").audio_encoder.path_dropout == 0.0
    with pytest.raises(ConfigError, match="spectrum path"):
        prepare_model(build_config({"model": {"name": "avid-tiny", "spectrum_dropout": 0.3}}))


def test_export_and_evaluate(avdigits_small: Path, tmp_path: Path) -> None:
    train(small_config(avdigits_small, tmp_path / "run", "optim.epochs=1"))
    meta = export_run(tmp_path / "run", tmp_path / "ckpt")
    assert meta["extra"]["method"] == "avid"
    model = load_checkpoint(tmp_path / "ckpt")
    assert model.preprocess.crop_size == 32
    state = load_run_state(tmp_path / "run")
    assert model.spectrogram_stats.to_dict() == state["spectrogram_stats"]
    records = load_records(avdigits_small, None)
    features = extract_features(model, records, workers=0)
    assert features.video.shape == (len(records), 128)
    assert features.stages["video/conv5x"].shape == (len(records), 128 * 4)
    results = evaluate_features(features, features)
    assert set(results["retrieval"]) == {"audio->video", "video->audio"}
    assert 0.0 <= results["retrieval"]["audio->video"]["instance"]["R@1"] <= 1.0


def test_augmentation_ranges_come_from_the_config(tmp_path: Path) -> None:
    from training.config import ConfigError
    from training.trainer import _augment_config

    config = small_config(
        tmp_path, tmp_path, "data.crop_scale=[0.4, 1.0]", "data.flip_p=0", "data.hue=0"
    )
    augment = _augment_config(config)
    assert (augment.crop_scale, augment.flip_p, augment.hue) == ((0.4, 1.0), 0.0, 0.0)
    assert augment.brightness == 0.4  # the spec's colour jitter stays
    default = _augment_config(small_config(tmp_path, tmp_path))
    assert (default.crop_scale, default.hue) == ((0.08, 1.0), 0.2)
    with pytest.raises(ConfigError, match="hue"):
        small_config(tmp_path, tmp_path, "data.hue=0.7")
    with pytest.raises(ConfigError, match="crop_scale"):
        small_config(tmp_path, tmp_path, "data.crop_scale=[0.9, 0.4]")


def test_in_batch_negatives_only_needs_batch_positives_and_infonce(tmp_path: Path) -> None:
    """loss.negatives=0: CLIP's in-batch softmax; a config that would leave a term without
    negatives (memory positives, NCE, within-modal terms) is refused with a reason."""
    from training.config import ConfigError

    ok = small_config(
        tmp_path, tmp_path, "loss.negatives=0", "loss.positives=batch", "loss.objective=infonce"
    )
    assert ok.loss.negatives == 0
    with pytest.raises(ConfigError, match="negatives=0"):
        small_config(tmp_path, tmp_path, "loss.negatives=0", "loss.objective=infonce")
    with pytest.raises(ConfigError, match="within_coeff"):
        small_config(
            tmp_path,
            tmp_path,
            "loss.negatives=0",
            "loss.positives=batch",
            "loss.objective=infonce",
            "loss.within_coeff=1",
        )
