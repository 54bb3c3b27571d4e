"""Typed records that go in and out of the index store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Modality = Literal["video", "audio"]
ItemKind = Literal["video", "audio"]
MODALITIES: tuple[Modality, ...] = ("video", "audio")

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class WindowVectors:
    """One modality's per-window embeddings of an item.

    ``vectors`` is (n_windows, dim) float32; ``starts`` / ``ends`` are (n_windows,) seconds.
    """

    vectors: FloatArray
    starts: npt.NDArray[np.float64]
    ends: npt.NDArray[np.float64]

    @classmethod
    def from_lists(
        cls, vectors: npt.ArrayLike, starts: npt.ArrayLike, ends: npt.ArrayLike
    ) -> WindowVectors:
        return cls(
            vectors=np.asarray(vectors, dtype=np.float32),
            starts=np.asarray(starts, dtype=np.float64),
            ends=np.asarray(ends, dtype=np.float64),
        )

    def __len__(self) -> int:
        return int(self.vectors.shape[0]) if self.vectors.ndim == 2 else 0


@dataclass(frozen=True)
class NewItem:
    """An item to add: what a worker produces from one uploaded media file.

    A ``kind="video"`` item has video windows and, when the file has an audio track, audio
    windows; a ``kind="audio"`` item has audio windows only. ``item_id=None`` lets the store
    pick one. ``content_hash`` is the sha256 of the uploaded bytes: together with
    ``model_version`` it makes ``add_item`` idempotent.
    """

    kind: ItemKind
    model_version: str
    content_hash: str
    duration: float
    video: WindowVectors | None = None
    audio: WindowVectors | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    item_id: str | None = None
    file_name: str | None = None  # the client's file name, sanitised (never a path)
    size_bytes: int | None = None  # the uploaded file's size

    def windows(self, modality: Modality) -> WindowVectors | None:
        return self.video if modality == "video" else self.audio


@dataclass(frozen=True)
class ItemRecord:
    """A stored item (its vectors stay in the store; ask ``vector_of`` / ``vectors_of``)."""

    item_id: str
    kind: ItemKind
    model_version: str
    content_hash: str
    duration: float
    has_video: bool
    has_audio: bool
    n_video_windows: int
    n_audio_windows: int
    metadata: dict[str, Any]
    created_at: float
    file_name: str | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class SearchHit:
    """One item in a search result: its best-matching window and that window's score.

    ``score`` is the cosine similarity of the best (query window, item window) pair;
    ``query_window`` is the index of that query row (0 for a single-vector query).
    """

    item_id: str
    score: float
    start: float
    end: float
    window: int
    query_window: int
    kind: ItemKind
    metadata: dict[str, Any]
    file_name: str | None = None
    size_bytes: int | None = None
