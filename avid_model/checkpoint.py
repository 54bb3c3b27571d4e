"""The project's checkpoint format: a directory with ``model.safetensors`` and ``avid.json``.

``avid.json`` holds the format version, the model configuration, the preprocessing settings,
the spectrogram statistics, the weights file's SHA-256 (integrity), a digest of the tensors
and a content hash over all of them (the model version a service stamps on every vector).
Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import load_file, save

from avid_model.features import PreprocessConfig, SpectrogramStats
from avid_model.model import AVIDModel, ModelConfig

FORMAT_NAME = "avid-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "avid.json"
# The committed demo checkpoint: what `avid serve` and `avid embed` load when given none.
DEFAULT_CHECKPOINT = (
    Path(__file__).resolve().parents[1] / "models" / "avid-summary-spectrum-avdigits"
)
CHECKPOINT_ENV = "AVID_CHECKPOINT"  # the setting `avid serve` reads (services.settings)


def configured_checkpoint() -> tuple[Path, str]:
    """The checkpoint a command loads when given none, and where that choice came from:
    ``AVID_CHECKPOINT`` when set (as `avid serve` and `avid worker` read it), else the
    committed ``DEFAULT_CHECKPOINT``."""
    value = os.environ.get(CHECKPOINT_ENV, "")
    if value:
        return Path(value), CHECKPOINT_ENV
    return DEFAULT_CHECKPOINT, "the default"


class CheckpointError(Exception):
    """A checkpoint that is missing, of another format or version, or damaged."""


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors themselves (names, dtypes, shapes, bytes) in name order.

    The file's own bytes are not canonical (safetensors may order its header differently
    between two saves of the same tensors), so the model's identity is hashed from this.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def content_hash(meta: dict[str, Any]) -> str:
    """SHA-256 over what defines the embedding space: config, preprocessing, stats, weights."""
    hashed = {k: meta[k] for k in ("model", "preprocess", "spectrogram_stats", "tensors_sha256")}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary handle on ``path.tmp``; on success flushed, fsynced and renamed over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def save_checkpoint(
    model: AVIDModel, dest: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``model`` (weights, config, preprocessing, stats) to the directory ``dest``.

    ``extra`` is free-form provenance (training run, source file), stored but not hashed.
    Returns the metadata written to ``avid.json``.
    """
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_writer(out / WEIGHTS_FILE) as handle:
        handle.write(save(state, metadata={"format": FORMAT_NAME, "model": model.config.name}))
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "preprocess": model.preprocess.to_dict(),
        "spectrogram_stats": model.spectrogram_stats.to_dict(),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256_file(out / WEIGHTS_FILE),
        "tensors_sha256": state_digest(state),
    }
    meta["content_hash"] = content_hash(meta)
    meta["model_version"] = f"{model.config.name}-{meta['content_hash'][:12]}"
    meta["extra"] = extra or {}
    with atomic_writer(out / META_FILE) as handle:
        handle.write(json.dumps(meta, indent=2).encode())
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked ``avid.json`` of a checkpoint directory (or of the JSON file itself)."""
    root = Path(path)
    meta_path = root if root.is_file() else root / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: {META_FILE} not found")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is not readable JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{meta_path} is not an {FORMAT_NAME} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has format version {meta.get('format_version')!r}; "
            f"this version of avid reads version {FORMAT_VERSION}"
        )
    if content_hash(meta) != meta.get("content_hash"):
        raise CheckpointError(f"{meta_path}: content hash does not match its contents")
    return meta


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> AVIDModel:
    """Rebuild the model, its preprocessing and statistics from a checkpoint; eval mode."""
    meta = read_metadata(path)
    root = Path(path)
    root = root.parent if root.is_file() else root
    weights = root / meta["weights_file"]
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights missing: {weights}")
    if _sha256_file(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights} is damaged: its SHA-256 does not match avid.json")
    model = AVIDModel(
        ModelConfig.from_dict(meta["model"]),
        PreprocessConfig.from_dict(meta["preprocess"]),
        SpectrogramStats.from_dict(meta["spectrogram_stats"]),
    )
    state = load_file(str(weights), device=map_location)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not fit model {model.config.name}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    model.model_version = str(meta["model_version"])
    return model.eval()
