"""The embedding backend: media file -> per-window vectors.

``EmbeddingBackend`` is what the API depends on; ``LocalEmbeddingBackend`` (embedded mode, and
inside each ``avid worker``) decodes in the calling thread and runs the model through one
``BatchingEmbedder`` shared by every request, so windows of concurrent uploads meet in the same
forward pass. ``services.worker.backend.CeleryEmbeddingBackend`` is the distributed mode's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from avid_model.checkpoint import load_checkpoint
from avid_model.inference import Embedder, FileEmbedding, InferenceSettings, embed_file
from avid_model.media import MediaInfo, MediaLimits
from services.batcher import BatchingEmbedder, BatchObserver
from services.errors import Unavailable
from services.index import Modality
from services.jobs import Progress
from services.settings import Settings

ALL_MODALITIES: frozenset[Modality] = frozenset({"video", "audio"})


class BackendUnavailable(Unavailable):
    """The backend cannot embed now: the broker is down, no worker answered in time, or the
    workers run another model. ``code`` is the API's error code (HTTP 503)."""

    def __init__(self, message: str, code: str = "unavailable") -> None:
        super().__init__(message, code=code)


class EmbeddingBackend(Protocol):
    model_version: str

    def embed_file(
        self,
        path: Path,
        modalities: frozenset[Modality] = ALL_MODALITIES,
        progress: Progress | None = None,
        info: MediaInfo | None = None,
    ) -> FileEmbedding:
        """Per-window vectors of ``path`` for the wanted ``modalities`` (others are None and
        their streams are not decoded). ``info``: the caller's probe of the file, if any.

        Raises the ``MediaError`` family for media that cannot be used, and
        ``BackendUnavailable`` when the file cannot be embedded now."""
        ...

    def is_ready(self) -> bool: ...

    def close(self) -> None: ...


def _skipped(inputs: torch.Tensor) -> torch.Tensor:
    """Stands in for an encoder whose output is not wanted: no forward pass."""
    return inputs.new_zeros((inputs.shape[0], 0), dtype=torch.float32)


class LocalEmbeddingBackend:
    """The model in this process, behind a cross-request batcher."""

    def __init__(
        self, embedder: Embedder, batcher: BatchingEmbedder, *, hop: float, limits: MediaLimits
    ) -> None:
        self.embedder = embedder
        self.batcher = batcher
        self.model_version = embedder.model_version
        self.hop = hop
        self.limits = limits
        # Windows one file submits at a time: half a batch, so two files can share a forward.
        self.file_batch_clips = max(1, batcher.max_batch_clips // 2)

    @classmethod
    def from_settings(
        cls, settings: Settings, on_batch: BatchObserver | None = None
    ) -> LocalEmbeddingBackend:
        """Load the checkpoint and start the batcher thread (call from the lifespan)."""
        model = load_checkpoint(settings.checkpoint_path())
        inference = InferenceSettings(
            device=settings.device,
            precision=settings.precision,
            compile=settings.compile,
            batch_size=settings.batch_max_clips,
        )
        embedder = Embedder(model, inference)
        batcher = BatchingEmbedder(
            embedder,
            settings.batch_max_clips,
            settings.batch_max_wait_ms,
            batching=settings.batching,
            on_batch=on_batch,
        )
        return cls(embedder, batcher, hop=settings.window_hop, limits=media_limits(settings))

    def embed_file(
        self,
        path: Path,
        modalities: frozenset[Modality] = ALL_MODALITIES,
        progress: Progress | None = None,
        info: MediaInfo | None = None,
    ) -> FileEmbedding:
        result = embed_file(
            path,
            self.batcher.embed_video if "video" in modalities else _skipped,
            self.batcher.embed_audio if "audio" in modalities else _skipped,
            self.embedder.preprocess,
            self.embedder.spectrogram_stats,
            hop=self.hop,
            limits=self.limits,
            batch_size=self.file_batch_clips,
            progress=progress,
            streams=frozenset(modalities),
            info=info,
        )
        if "video" not in modalities:
            result.video = None
        if "audio" not in modalities:
            result.audio = None
        return result

    def is_ready(self) -> bool:
        return self.batcher.is_running

    def close(self) -> None:
        self.batcher.close()


def media_limits(settings: Settings) -> MediaLimits:
    return MediaLimits(
        max_duration_s=settings.max_duration_s,
        max_pixels=settings.max_pixels,
        max_file_bytes=settings.max_upload_bytes,
    )
