"""Import checkpoints of the published reference implementation (AVID_SPEC.md §1 layout).

The reference saves ``torch.save({'epoch', 'model', 'optimizer', 'train_criterion'})`` with
``module.``-prefixed keys. This module loads such a file with ``weights_only=True`` (no
arbitrary unpickling), renames the keys to this project's modules, infers the widths from the
weights and writes the project's own checkpoint format. Memory banks, the NCE constant Z and
CMA positive sets, when present, go to ``memory.safetensors`` beside it for further training.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from avid_model.checkpoint import CheckpointError, save_checkpoint
from avid_model.features import SpectrogramStats
from avid_model.model import AVIDModel, ModelConfig
from avid_model.registry import list_models, model_entry

MEMORY_FILE = "memory.safetensors"
_PREFIXES = {
    "video_model.": "video_encoder.",
    "audio_model.": "audio_encoder.",
    "video_proj.": "video_head.",
    "audio_proj.": "audio_head.",
}
_BANK_SUFFIXES = {
    "view1_mem": "video",
    "view2_mem": "audio",
    "avg_exp_score": "z",
    "positive_set": "positive_set",
}


def load_reference_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The reference checkpoint's top-level dict, loaded with ``weights_only=True``."""
    src = Path(path)
    if not src.is_file():
        raise CheckpointError(f"reference checkpoint not found: {src}")
    try:
        data = torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{src.name} is not a loadable reference checkpoint (loaded with weights_only=True, "
            f"which refuses arbitrary pickled objects): {exc}"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{src.name} has no 'model' state dict: not a reference checkpoint")
    return data


def convert_state_dict(reference_model: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename reference keys (``module.video_model.conv1.0.weight`` -> ``video_encoder...``)."""
    state: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in reference_model.items():
        name = key.removeprefix("module.")
        for old, new in _PREFIXES.items():
            if name.startswith(old):
                state[new + name[len(old) :]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unexpected keys in the reference model: {sorted(unknown)[:8]}")
    return state


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Widths and head sizes read from the weights; the registered name when they match one."""
    try:
        video = [state["video_encoder.conv1.0.weight"].shape[0]] + [
            state[f"video_encoder.conv{i}x.0.spt_conv1.weight"].shape[0] for i in range(2, 6)
        ]
        audio = [state["audio_encoder.conv1.0.weight"].shape[0]] + [
            state[f"audio_encoder.block{i}.conv1.weight"].shape[0] for i in range(1, 5)
        ]
        hidden = state["video_head.projection.0.weight"].shape[0]
        embed = state["video_head.projection.4.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"reference model lacks the weight {exc.args[0]}") from exc
    inferred = ModelConfig(
        name="avid-imported",
        video_widths=tuple(int(w) for w in video),
        audio_widths=tuple(int(w) for w in audio),
        head_hidden=int(hidden),
        embed_dim=int(embed),
        description="imported reference weights",
    )
    for name in list_models():
        config = model_entry(name).config
        if replace(config, name=inferred.name) == inferred:
            return config
    return inferred


def extract_memory(train_criterion: Any) -> dict[str, torch.Tensor]:
    """Memory banks (video, audio), Z and CMA positive sets from ``train_criterion``."""
    found: dict[str, torch.Tensor] = {}
    if not isinstance(train_criterion, dict):
        return found
    for key, value in train_criterion.items():
        for suffix, name in _BANK_SUFFIXES.items():
            if str(key).endswith(suffix):
                found[name] = torch.as_tensor(value).detach().clone().contiguous()
    return found


def import_reference(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    spectrogram_stats: SpectrogramStats | None = None,
) -> dict[str, Any]:
    """Convert a reference ``*.pth.tar`` into a checkpoint directory; returns its metadata."""
    data = load_reference_file(src)
    state = convert_state_dict(data["model"])
    config = infer_config(state)
    preprocess = model_entry(config.name).preprocess if config.name in list_models() else None
    model = AVIDModel(config, preprocess, spectrogram_stats)
    fresh = model.state_dict()
    for key in fresh:  # older files may lack BatchNorm's step counter; it does not affect outputs
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = fresh[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"reference weights do not fit {config.name}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    memory = extract_memory(data.get("train_criterion"))
    extra: dict[str, Any] = {
        "source": "reference-import",
        "source_file": Path(src).name,
        "epoch": int(data["epoch"]) if isinstance(data.get("epoch"), int) else None,
        "spectrogram_stats": "given" if spectrogram_stats is not None else "identity",
        "memory": sorted(memory),
    }
    meta = save_checkpoint(model, dest, extra=extra)
    if memory:
        save_file(memory, str(Path(dest) / MEMORY_FILE))
    return meta
