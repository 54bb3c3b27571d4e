"""Vectors and items with known answers for the index store tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from services.index import ItemKind, NewItem, WindowVectors

DIM = 128
VERSION = "avid-test-v1"


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> npt.NDArray[np.float32]:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(
    x: npt.NDArray[np.float32], rng: np.random.Generator, noise: float = 0.01
) -> npt.NDArray[np.float32]:
    """``x`` plus a little noise, renormalised: still far closer to ``x`` than to anything
    random in 128-d."""
    y = x + noise * rng.standard_normal(x.shape).astype(np.float32)
    return y / np.linalg.norm(y, axis=-1, keepdims=True)


def windows(vectors: npt.NDArray[np.float32], step: float = 2.0) -> WindowVectors:
    starts = np.arange(len(vectors), dtype=np.float64) * step
    return WindowVectors(vectors=vectors, starts=starts, ends=starts + step)


def make_item(
    rng: np.random.Generator,
    content_hash: str,
    *,
    kind: ItemKind = "video",
    n_video: int = 4,
    n_audio: int = 4,
    video: npt.NDArray[np.float32] | None = None,
    audio: npt.NDArray[np.float32] | None = None,
    model_version: str = VERSION,
    item_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> NewItem:
    if kind == "video" and video is None:
        video = unit(rng, n_video)
    if audio is None and n_audio:
        audio = unit(rng, n_audio)
    n = max(len(video) if video is not None else 0, len(audio) if audio is not None else 0)
    return NewItem(
        kind=kind,
        model_version=model_version,
        content_hash=content_hash,
        duration=2.0 * n,
        video=windows(video) if video is not None else None,
        audio=windows(audio) if audio is not None else None,
        metadata=metadata if metadata is not None else {"name": content_hash},
        item_id=item_id,
    )


def clustered(
    rng: np.random.Generator, n: int, n_centres: int = 50, spread: float = 0.6
) -> npt.NDArray[np.float32]:
    """Unit vectors around ``n_centres`` random centres (like real embeddings, unlike
    uniformly random 128-d vectors)."""
    centres = unit(rng, n_centres)
    x = centres[rng.integers(0, n_centres, n)]
    x = x + rng.standard_normal(x.shape).astype(np.float32) * np.float32(spread / np.sqrt(DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
