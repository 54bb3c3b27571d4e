"""``avid eval``: what a model learnt, measured on a labelled data set.

Frozen features of the train and test splits (test-time clips, averaged per video), then:
linear probes on every video stage (conv2x..conv5x, max-pooled to a 1x2x2 grid) and audio
stage (block1..block4, 2x2 grid), on the audio tower's output (``audio/encoder``: what its
projection head reads; for a tower with a spectrum path, both paths) and on the embeddings;
cosine kNN accuracy on the embeddings; cross-modal retrieval on the test split in both
directions, at instance level (the same clip: R@1/5/10 against chance) and class level (the
same label: P@k and mAP; the query's own clip is left out of the targets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from avid_model.model import AVIDModel
from training.clips import MediaCache
from training.data import AVClipDataset
from training.metrics import class_retrieval, instance_recall, knn_accuracy, linear_probe_accuracy
from training.sources import VideoRecord

RETRIEVAL_KS = (1, 5, 10)


@dataclass
class SplitFeatures:
    """Per-video features of one split (clip features averaged over the video's clips)."""

    labels: torch.Tensor  # (N,)
    video: torch.Tensor  # (N, D) unit embeddings
    audio: torch.Tensor  # (N, D)
    stages: dict[str, torch.Tensor] = field(default_factory=dict)  # "video/conv2x": (N, F)


def _pooled_stages(model: AVIDModel, video: torch.Tensor, audio: torch.Tensor) -> dict[str, Any]:
    vf = model.video_features(video)
    af = model.audio_features(audio)
    out = {
        f"video/{name}": F.adaptive_max_pool3d(vf[name], (1, 2, 2)).flatten(1)
        for name in ("conv2x", "conv3x", "conv4x", "conv5x")
    }
    out.update(
        {
            f"audio/{name}": F.adaptive_max_pool2d(af[name], (2, 2)).flatten(1)
            for name in ("block1", "block2", "block3", "block4")
        }
    )
    # The encoder's own output (its 2-D path pools block4; a spectrum path adds its own part),
    # probed and projected from one forward pass (what model.encode_audio computes).
    out["audio/encoder"] = model.audio_encoder(audio)
    out["video_emb"] = F.normalize(model.video_head(vf["conv5x"].amax(dim=(2, 3, 4))), dim=1)
    out["audio_emb"] = F.normalize(model.audio_head(out["audio/encoder"]), dim=1)
    return out


@torch.inference_mode()
def extract_features(
    model: AVIDModel,
    records: list[VideoRecord],
    *,
    clips_per_video: int = 1,
    batch_size: int = 32,
    workers: int = 2,
    device: torch.device | None = None,
    media_cache: MediaCache | None = None,
) -> SplitFeatures:
    """Test-time features of `records`; with `media_cache`, files are decoded once per process
    (taken from it, or decoded by `workers` and put there) instead of once per clip."""
    device = device or torch.device("cpu")
    model = model.eval().to(device)
    dataset = AVClipDataset(
        records,
        model.preprocess,
        model.spectrogram_stats,
        train=False,
        clips_per_video=clips_per_video,
        cache=media_cache is not None,
        media_cache=media_cache,
    )
    if media_cache is not None:
        dataset.fill_cache(workers=workers)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(len(records))
    for batch in loader:
        ids = batch["index"]
        pooled = _pooled_stages(model, batch["video"].to(device), batch["audio"].to(device))
        for name, values in pooled.items():
            values = values.float().cpu()
            if name not in sums:
                sums[name] = torch.zeros(len(records), values.shape[1])
            sums[name].index_add_(0, ids, values)
        counts.index_add_(0, ids, torch.ones(len(ids)))
    means = {name: total / counts[:, None].clamp_min(1) for name, total in sums.items()}
    labels = torch.tensor([r.label for r in records])
    return SplitFeatures(
        labels=labels,
        video=F.normalize(means.pop("video_emb"), dim=1),
        audio=F.normalize(means.pop("audio_emb"), dim=1),
        stages=means,
    )


def evaluate_features(train: SplitFeatures, test: SplitFeatures, seed: int = 0) -> dict[str, Any]:
    """All metrics from extracted features; a JSON-ready dict."""
    probes: dict[str, float] = {}
    for name in train.stages:
        probes[name] = linear_probe_accuracy(
            train.stages[name].numpy(),
            train.labels.numpy(),
            test.stages[name].numpy(),
            test.labels.numpy(),
            seed=seed,
        )
    for name, tr, te in (
        ("video/embedding", train.video, test.video),
        ("audio/embedding", train.audio, test.audio),
    ):
        probes[name] = linear_probe_accuracy(
            tr.numpy(), train.labels.numpy(), te.numpy(), test.labels.numpy(), seed=seed
        )
    knn = {
        "video": knn_accuracy(train.video, train.labels, test.video, test.labels),
        "audio": knn_accuracy(train.audio, train.labels, test.audio, test.labels),
    }
    retrieval: dict[str, Any] = {}
    for direction, queries, targets in (
        ("audio->video", test.audio, test.video),
        ("video->audio", test.video, test.audio),
    ):
        retrieval[direction] = {
            "instance": instance_recall(queries, targets, RETRIEVAL_KS),
            "class": class_retrieval(
                queries, test.labels, targets, test.labels, RETRIEVAL_KS, exclude_same_index=True
            ),
        }
    return {
        "linear_probe": probes,
        "knn": knn,
        "retrieval": retrieval,
        "sizes": {"train": len(train.labels), "test": len(test.labels)},
    }


def results_markdown(results: dict[str, Any]) -> str:
    """A compact markdown summary of ``evaluate_features`` output."""
    lines = ["| metric | value |", "|---|---|"]
    for name, acc in results["linear_probe"].items():
        lines.append(f"| linear probe {name} | {acc:.3f} |")
    for name, acc in results["knn"].items():
        lines.append(f"| kNN {name} | {acc:.3f} |")
    for direction, parts in results["retrieval"].items():
        inst, cls = parts["instance"], parts["class"]
        lines.append(
            f"| {direction} instance R@1/5/10 | {inst['R@1']:.3f} / {inst['R@5']:.3f} / "
            f"{inst['R@10']:.3f} (chance {inst['chance R@1']:.3f} / {inst['chance R@5']:.3f} / "
            f"{inst['chance R@10']:.3f}) |"
        )
        lines.append(
            f"| {direction} class P@1/5/10, mAP | {cls['P@1']:.3f} / {cls['P@5']:.3f} / "
            f"{cls['P@10']:.3f}, {cls['mAP']:.3f} (chance {cls['chance P@k']:.3f}) |"
        )
    return "\n".join(lines)
