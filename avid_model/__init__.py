"""AVID: audio-visual instance discrimination models (R(2+1)D-18 video, Conv2D-10 audio).

The model library: encoders, heads, media decoding, features, losses, memory banks and
checkpoints. It imports torch, torchvision, torchaudio, av and numpy, never a service framework.
The names below load on first use, so ``import avid_model.errors`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avid_model.checkpoint import (
        CheckpointError,
        load_checkpoint,
        read_metadata,
        save_checkpoint,
    )
    from avid_model.model import AVIDModel, ModelConfig
    from avid_model.registry import UnknownModelError, create_model, list_models, register_model

_EXPORTS = {
    "CheckpointError": "avid_model.checkpoint",
    "load_checkpoint": "avid_model.checkpoint",
    "read_metadata": "avid_model.checkpoint",
    "save_checkpoint": "avid_model.checkpoint",
    "AVIDModel": "avid_model.model",
    "ModelConfig": "avid_model.model",
    "UnknownModelError": "avid_model.registry",
    "create_model": "avid_model.registry",
    "list_models": "avid_model.registry",
    "register_model": "avid_model.registry",
}
__all__ = [
    "AVIDModel",
    "CheckpointError",
    "ModelConfig",
    "UnknownModelError",
    "create_model",
    "list_models",
    "load_checkpoint",
    "read_metadata",
    "register_model",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'avid_model' has no attribute {name!r}")
