"""Validation of a ``NewItem`` (or replacement windows) before anything is written."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from services.index.errors import BadItem, ModelVersionMismatch
from services.index.records import ItemKind, Modality, NewItem, WindowVectors
from services.index.vector_checks import checked_windows

MAX_ID_LENGTH = 200


@dataclass(frozen=True)
class CheckedItem:
    item: NewItem
    windows: dict[Modality, WindowVectors]  # unit float32 vectors, only present modalities
    metadata_json: str


def check_model_version(model_version: str, store_version: str, what: str) -> None:
    if model_version != store_version:
        raise ModelVersionMismatch(
            f"{what} was embedded by model {model_version!r} but this store holds "
            f"{store_version!r}: vectors of different models live in different spaces"
        )


def checked_modalities(
    kind: ItemKind, video: WindowVectors | None, audio: WindowVectors | None, dim: int
) -> dict[Modality, WindowVectors]:
    """The item's windows per modality, validated against its kind."""
    if kind not in ("video", "audio"):
        raise BadItem(f"kind must be 'video' or 'audio', got {kind!r}")
    if kind == "audio" and video is not None:
        raise BadItem("an audio item has no video windows")
    if kind == "video" and video is None:
        raise BadItem("a video item needs video windows")
    if audio is None and video is None:
        raise BadItem("an item needs windows of at least one modality")
    out: dict[Modality, WindowVectors] = {}
    if video is not None:
        out["video"] = checked_windows(video, dim, "video windows")
    if audio is not None:
        out["audio"] = checked_windows(audio, dim, "audio windows")
    return out


def metadata_text(metadata: Any) -> str:
    """``metadata`` as the JSON text the store keeps; ``BadItem`` unless a JSON object."""
    if not isinstance(metadata, dict):
        raise BadItem(f"metadata must be a JSON object, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise BadItem(f"metadata is not JSON-serialisable: {exc}") from exc


def checked_item(item: NewItem, dim: int, store_version: str) -> CheckedItem:
    check_model_version(item.model_version, store_version, "item")
    if item.item_id is not None and (
        not isinstance(item.item_id, str) or not 0 < len(item.item_id) <= MAX_ID_LENGTH
    ):
        raise BadItem(f"item_id must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    if not isinstance(item.content_hash, str) or not item.content_hash:
        raise BadItem("content_hash must be a non-empty string (the sha256 of the upload)")
    if not (isinstance(item.duration, int | float) and math.isfinite(item.duration)):
        raise BadItem(f"duration must be a finite number, got {item.duration!r}")
    if item.duration < 0:
        raise BadItem(f"duration must be >= 0, got {item.duration}")
    metadata_json = metadata_text(item.metadata)
    windows = checked_modalities(item.kind, item.video, item.audio, dim)
    return CheckedItem(item=item, windows=windows, metadata_json=metadata_json)
