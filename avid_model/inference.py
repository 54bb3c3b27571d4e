"""Fast batched inference: from model inputs, or from a media file, to 128-d vectors.

The fastest setup measured by ``bench/encode.py`` that keeps embeddings within cosine 0.999
of fp32 eager: inference mode, bf16 weights and activations where the hardware computes bf16
natively (CUDA, and CPUs with AVX512-BF16 or AMX), channels-last memory layout, BatchNorm
folded into the convolution before it, and optionally
``torch.compile`` with frozen weights. Outputs are always float32, L2-normalised in float32.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from avid_model.features import PreprocessConfig, SpectrogramStats, audio_batch, video_batch
from avid_model.media import MediaInfo, MediaLimits, MediaWindow, iter_windows, probe
from avid_model.model import AVIDModel

Precision = Literal["auto", "fp32", "bf16"]


def cpu_has_native_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions natively (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


@dataclass(frozen=True)
class InferenceSettings:
    """How to run the encoders. ``batch_size`` counts clips (windows), not files."""

    device: str = "auto"
    precision: Precision = "auto"
    channels_last: bool = True
    compile: bool = False
    fuse_batchnorm: bool = True
    batch_size: int = 16

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def resolve_dtype(self, device: torch.device) -> torch.dtype:
        if self.precision == "fp32":
            return torch.float32
        if self.precision == "bf16":
            return torch.bfloat16
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def to_channels_last(module: nn.Module) -> None:
    """Channels-last weights for every 2-D and 3-D convolution (a tower may hold both, or
    1-D ones, which have no such layout: the summary towers)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv3d):
            layer.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        elif isinstance(layer, nn.Conv2d):
            layer.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


@dataclass
class FileEmbedding:
    """Per-window vectors of one media file; ``video``/``audio`` are None without that stream."""

    duration: float
    has_video: bool
    has_audio: bool
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    video: torch.Tensor | None = None  # (n_windows, D) float32, unit rows
    audio: torch.Tensor | None = None  # (n_windows, D) float32, unit rows

    @staticmethod
    def _pool(vectors: torch.Tensor | None) -> torch.Tensor | None:
        return None if vectors is None else F.normalize(vectors.mean(dim=0), dim=0)

    @property
    def item_video(self) -> torch.Tensor | None:
        """The item-level video vector: the mean of window vectors, re-normalised, (D,)."""
        return self._pool(self.video)

    @property
    def item_audio(self) -> torch.Tensor | None:
        return self._pool(self.audio)


class Embedder:
    """A model prepared for inference on one device, with batched encode calls."""

    def __init__(self, model: AVIDModel, settings: InferenceSettings | None = None) -> None:
        self.settings = settings or InferenceSettings()
        self.device = self.settings.resolve_device()
        self.dtype = self.settings.resolve_dtype(self.device)
        self.model_version = model.model_version
        self.preprocess = model.preprocess
        self.spectrogram_stats = model.spectrogram_stats
        prepared = copy.deepcopy(model).eval()
        if self.settings.fuse_batchnorm:
            # Fold each BatchNorm that directly follows a convolution into its weights.
            prepared.video_encoder = fuse(prepared.video_encoder)  # type: ignore[assignment]
            prepared.audio_encoder = fuse(prepared.audio_encoder)  # type: ignore[assignment]
        prepared = prepared.to(device=self.device, dtype=self.dtype)
        if self.settings.channels_last:
            to_channels_last(prepared.video_encoder)
            to_channels_last(prepared.audio_encoder)
        self.model = prepared
        self._video = self._maybe_compile(lambda x: prepared.video_head(prepared.video_encoder(x)))
        self._audio = self._maybe_compile(lambda x: prepared.audio_head(prepared.audio_encoder(x)))

    def _maybe_compile(
        self, fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        if not self.settings.compile:
            return fn
        # Freezing folds BatchNorm into the convolutions and constant-folds the weights.
        return torch.compile(fn, dynamic=False, options={"freezing": True})

    def _run(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        layout: torch.memory_format,
    ) -> torch.Tensor:
        outputs = []
        with torch.inference_mode():
            for chunk in x.split(self.settings.batch_size):
                n = chunk.shape[0]
                if self.settings.compile:  # one compiled graph per power-of-two batch size
                    padded = min(1 << (n - 1).bit_length(), self.settings.batch_size)
                    chunk = torch.cat([chunk, chunk[-1:].expand(padded - n, *chunk.shape[1:])])
                chunk = chunk.to(device=self.device, dtype=self.dtype, non_blocking=True)
                if self.settings.channels_last:
                    chunk = chunk.contiguous(memory_format=layout)
                outputs.append(F.normalize(fn(chunk)[:n].float(), dim=1).cpu())
        return torch.cat(outputs)

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` float clips -> ``(B, D)`` float32 unit vectors on the CPU."""
        return self._run(self._video, clips, torch.channels_last_3d)

    def embed_audio(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 200, 257)`` normalised log spectrograms -> ``(B, D)`` float32 unit vectors."""
        return self._run(self._audio, spectrograms, torch.channels_last)

    def embed_file(
        self,
        path: str | os.PathLike[str],
        *,
        hop: float = 1.0,
        limits: MediaLimits | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> FileEmbedding:
        """Cut a media file into windows (streamed) and embed every window, batch by batch."""
        return embed_file(
            path,
            self.embed_video,
            self.embed_audio,
            self.preprocess,
            self.spectrogram_stats,
            hop=hop,
            limits=limits,
            batch_size=self.settings.batch_size,
            progress=progress,
        )


Encode = Callable[[torch.Tensor], torch.Tensor]


def embed_file(
    path: str | os.PathLike[str],
    encode_video: Encode,
    encode_audio: Encode,
    preprocess: PreprocessConfig,
    stats: SpectrogramStats,
    *,
    hop: float = 1.0,
    limits: MediaLimits | None = None,
    batch_size: int = 16,
    progress: Callable[[float], None] | None = None,
    streams: frozenset[str] = frozenset({"video", "audio"}),
    info: MediaInfo | None = None,
) -> FileEmbedding:
    """Decode ``path`` window by window (streamed) and embed each batch of ``batch_size``.

    ``encode_video``/``encode_audio`` map model inputs to ``(n, D)`` unit vectors (an
    ``Embedder``'s methods, or a service's cross-request batcher). Only the ``streams`` asked
    for are decoded and embedded (the other's vectors are None; ``has_video``/``has_audio``
    still say what the file holds). ``info``: the file's probe when the caller made it already.
    ``progress`` is called with the fraction of the file's duration done so far. Raises the
    ``MediaError`` family.
    """
    limits = limits or MediaLimits()
    path = Path(path)
    info = info if info is not None else probe(path, limits)
    result = FileEmbedding(info.duration, info.has_video, info.has_audio)
    video_parts: list[torch.Tensor] = []
    audio_parts: list[torch.Tensor] = []
    windows = iter_windows(
        path, preprocess=preprocess, hop=hop, limits=limits, streams=streams, info=info
    )
    for batch in _batched(windows, batch_size):
        clips = [w.video for w in batch if w.video is not None]
        waves = [w.audio for w in batch if w.audio is not None]
        if clips:
            video_parts.append(encode_video(video_batch(clips, preprocess)))
        if waves:
            audio_parts.append(encode_audio(audio_batch(waves, preprocess, stats)))
        result.starts.extend(w.start for w in batch)
        result.ends.extend(w.end for w in batch)
        if progress is not None and info.duration > 0:
            progress(min(1.0, batch[-1].end / info.duration))
    result.video = torch.cat(video_parts) if video_parts else None
    result.audio = torch.cat(audio_parts) if audio_parts else None
    return result


def _batched(windows: Iterator[MediaWindow], size: int) -> Iterator[list[MediaWindow]]:
    batch: list[MediaWindow] = []
    for window in windows:
        batch.append(window)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
