"""The learning / collapse monitor: is the model learning, or are its embeddings collapsing?

Two cheap signals, both from the current weights:

* spread: the mean cosine between the embeddings of *different* clips (the mean off-diagonal
  entry of ``E @ E.T`` for unit rows E). Near 1 when every clip maps to the same point
  (collapse); well below 1 for embeddings that tell clips apart. The trainer logs it for each
  logged training batch (``batch_spread``) and for a fixed held-out set once an epoch.
* held-out instance retrieval: test-time clips of a held-out split, averaged per video
  (``training.evaluate.extract_features``), audio->video and video->audio R@1 / R@10 against
  chance (1/N, 10/N). A model that learns lifts them above chance; one that collapses stays at
  or below it.

``held_out_health`` computes both without touching training state: eval mode under
``torch.inference_mode`` (then the model's previous mode back), the global RNG as it was. It runs
no collectives, so under DDP the main rank alone calls it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from avid_model.model import AVIDModel
from training.clips import MediaCache
from training.evaluate import extract_features
from training.metrics import instance_recall
from training.sources import VideoRecord, load_records

MODALITIES = ("video", "audio")


def batch_spread(emb: torch.Tensor) -> float:
    """Mean cosine between different rows of ``emb`` (N, D), N >= 2 (rows are L2-normalised).

    1.0 for identical rows, 0.0 for orthogonal ones; never below -1 / (N - 1).
    """
    n = emb.shape[0]
    if emb.ndim != 2 or n < 2:
        raise ValueError(f"batch_spread needs (N >= 2, D) embeddings, got {tuple(emb.shape)}")
    unit = F.normalize(emb.detach().double(), dim=1)
    # sum_ij u_i . u_j = |sum_i u_i|^2; the diagonal adds |u_i|^2 (1, or 0 for a zero row).
    total = unit.sum(dim=0).square().sum()
    diagonal = unit.square().sum()
    return float((total - diagonal) / (n * (n - 1)))


def monitor_records(source: str | Path, split: str, clips: int) -> tuple[list[VideoRecord], str]:
    """The held-out set: the first ``clips`` records of ``split`` in the source, and "".

    With fewer than 2 such records (no such split, or a source without splits) it returns no
    records and the reason the monitor is off. A chosen record whose file is missing is an error.
    """
    chosen = [r for r in load_records(source, None, check_files=False) if r.split == split]
    chosen = chosen[:clips]
    if len(chosen) < 2:
        return [], (
            f"held-out monitor off: {source} has {len(chosen)} clip(s) in split {split!r} "
            "(needs at least 2; set run.monitor_split, or run.monitor_clips=0)"
        )
    missing = [r for r in chosen if not r.path.is_file()]
    if missing:
        raise ValueError(f"{source}: monitor split {split!r}: {missing[0].path} does not exist")
    return chosen, ""


def held_out_health(
    model: AVIDModel,
    records: list[VideoRecord],
    *,
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device | None = None,
    media_cache: MediaCache | None = None,
) -> dict[str, Any]:
    """Retrieval and spread of ``records`` (N >= 2) embedded by ``model``'s current weights.

    Returns ``a2v_r1``, ``a2v_r10``, ``v2a_r1``, ``v2a_r10`` (instance recall), ``chance_r1``,
    ``chance_r10`` (1/N, min(1, 10/N)), ``video_spread``, ``audio_spread`` and ``clips`` (N).
    """
    if len(records) < 2:
        raise ValueError(f"held_out_health needs at least 2 records, got {len(records)}")
    device = device or next(model.parameters()).device
    was_training = model.training
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices):
            features = extract_features(
                model,
                records,
                batch_size=batch_size,
                workers=workers,
                device=device,
                media_cache=media_cache,
            )
    finally:
        model.train(was_training)
    a2v = instance_recall(features.audio, features.video, (1, 10))
    v2a = instance_recall(features.video, features.audio, (1, 10))
    health: dict[str, Any] = {
        "a2v_r1": a2v["R@1"],
        "a2v_r10": a2v["R@10"],
        "v2a_r1": v2a["R@1"],
        "v2a_r10": v2a["R@10"],
        "chance_r1": a2v["chance R@1"],
        "chance_r10": a2v["chance R@10"],
        "video_spread": batch_spread(features.video),
        "audio_spread": batch_spread(features.audio),
    }
    health = {k: round(v, 6) for k, v in health.items()}
    health["clips"] = len(records)
    return health


def collapse_alarms(health: dict[str, Any], threshold: float) -> list[tuple[str, float]]:
    """(modality, spread) for each modality whose ``<modality>_spread`` exceeds ``threshold``."""
    spreads = [(m, float(health[f"{m}_spread"])) for m in MODALITIES]
    return [(m, s) for m, s in spreads if s > threshold]


def health_line(health: dict[str, Any], *, epoch: int, step: int) -> str:
    """A one-line summary of ``held_out_health`` output."""
    return (
        f"monitor epoch {epoch} step {step} ({health['clips']} held-out clips): "
        f"a2v R@1 {health['a2v_r1']:.3f} R@10 {health['a2v_r10']:.3f}, "
        f"v2a R@1 {health['v2a_r1']:.3f} R@10 {health['v2a_r10']:.3f} "
        f"(chance {health['chance_r1']:.3f} / {health['chance_r10']:.3f}); "
        f"spread video {health['video_spread']:.3f} audio {health['audio_spread']:.3f}"
    )


def report_health(
    model: AVIDModel,
    records: list[VideoRecord],
    write: Callable[..., None],
    *,
    epoch: int,
    step: int,
    threshold: float,
    batch_size: int,
    workers: int,
    device: torch.device,
    media_cache: MediaCache | None = None,
) -> dict[str, Any]:
    """Run ``held_out_health``; write a ``monitor`` event (and a ``collapse`` event per modality
    over ``threshold``) through ``write(event, **fields)`` and print a summary / a warning."""
    health = held_out_health(
        model,
        records,
        batch_size=batch_size,
        workers=workers,
        device=device,
        media_cache=media_cache,
    )
    write("monitor", epoch=epoch, step=step, **health)
    tqdm.write(health_line(health, epoch=epoch, step=step))
    for modality, spread in collapse_alarms(health, threshold):
        write("collapse", epoch=epoch, step=step, modality=modality, spread=spread)
        tqdm.write(
            f"WARNING: {modality} embeddings are collapsing: held-out clips' mean cosine "
            f"{spread:.3f} > run.collapse_cosine {threshold} (epoch {epoch}, step {step})",
            file=sys.stderr,
        )
    return health
