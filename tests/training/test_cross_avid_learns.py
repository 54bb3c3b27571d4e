"""Cross-AVID must learn something from the sound alone: after a short run on a small
AV-Digits set, each clip's audio finds its own video well above chance (issue 8: every
self-supervised run before the BatchNorm head collapsed and stayed at chance).

Slow (about 3 minutes on 2 cores): ``pytest -m slow tests/training/test_cross_avid_learns.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from avid_model import load_checkpoint
from training.avdigits import generate
from training.avdigits_clip import RenderSettings
from training.config import build_config
from training.evaluate import extract_features
from training.export import export_run
from training.metrics import instance_recall
from training.sources import load_records
from training.trainer import train

CLIPS = 160
TIMES_CHANCE = 3  # audio->video instance R@10 on the training clips, against chance


@pytest.mark.slow
def test_short_cross_avid_run_retrieves_instances_above_chance(tmp_path: Path) -> None:
    manifest = generate(
        tmp_path / "data", clips=CLIPS, seed=5, workers=2, settings=RenderSettings()
    )
    tree = {
        "model": {"name": "avid-lite", "crop_size": 32, "clip_frames": 16, "fps": 8},
        "data": {
            "manifest": str(manifest),
            "split": "train",
            "clips_per_video": 4,
            "crop_scale": [0.7, 1.0],
            "flip_p": 0.0,
            "workers": 0,
            "stats_clips": 64,
        },
        "loss": {"method": "avid", "objective": "infonce", "negatives": 1024},
        "optim": {"batch_size": 32, "epochs": 20, "lr": 1e-3},
        "run": {
            "out_dir": str(tmp_path / "run"),
            "device": "cpu",
            "progress": False,
            "log_every": 20,
            "monitor_clips": 0,
        },
    }
    train(build_config(tree, ()))
    export_run(tmp_path / "run", tmp_path / "ckpt")
    model = load_checkpoint(tmp_path / "ckpt")
    records = load_records(manifest, "train")
    features = extract_features(model, records, workers=0)
    recall = instance_recall(features.audio, features.video, ks=(1, 10))
    chance = 10 / len(records)
    assert recall["R@10"] >= TIMES_CHANCE * chance, (recall, chance)
