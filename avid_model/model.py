"""The AVID model: two encoders, two projection heads, L2-normalised 128-d embeddings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from avid_model.audio_encoder import Conv2D10, Conv2D10Spectrum
from avid_model.features import PreprocessConfig, SpectrogramStats
from avid_model.video_encoder import (
    ClipSummary2D4,
    Conv2Plus1D4,
    R2Plus1D18,
    TemporalMixing,
    VideoArch,
)

HeadNorm = Literal["none", "batch"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one AVID model (widths are stem + four stages per encoder)."""

    name: str
    video_widths: tuple[int, ...] = (64, 64, 128, 256, 512)
    audio_widths: tuple[int, ...] = (64, 64, 128, 256, 512)
    head_hidden: int = 512
    embed_dim: int = 128
    # Temporal convolutions of the video blocks: "full" (the paper) or "depthwise".
    video_temporal: TemporalMixing = "full"
    # The video tower: the paper's R(2+1)D-18 ("r2plus1d-18"; widths are stem + 4 stages) or
    # the 4-layer CPU tower of ``avid-lite`` ("conv2plus1d-4"; widths are its 4 stages).
    video_arch: VideoArch = "r2plus1d-18"
    # Projection heads: "none" (the paper) or "batch" (BatchNorm after each linear layer, the
    # last without affine, as SimCLR's head; keeps a small model's embeddings from collapsing).
    head_norm: HeadNorm = "none"
    # conv2plus1d-4 only: add each pixel's temporal standard deviation to its input (9
    # channels, see :class:`FrameDifference`).
    video_energy: bool = False
    # summary2d-4 only: the clip picture's channels, "full" (mean frame + its change over time,
    # 12) or "change" (only the change: std, max, min; 9), see :class:`ClipSummary`.
    video_summary: Literal["full", "change"] = "full"
    # The audio tower: the paper's Conv2D-10 ("conv2d-10") or Conv2D-10 beside a spectrum
    # summary path ("conv2d-10+spectrum", see :class:`~avid_model.audio_encoder.SpectrumSummary`).
    audio_arch: Literal["conv2d-10", "conv2d-10+spectrum"] = "conv2d-10"
    description: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("video_widths", "audio_widths"):
            if key in known:
                known[key] = tuple(int(w) for w in known[key])
        return cls(**known)


def build_video_encoder(config: ModelConfig) -> R2Plus1D18 | Conv2Plus1D4 | ClipSummary2D4:
    if config.video_arch == "r2plus1d-18":
        return R2Plus1D18(config.video_widths, config.video_temporal)
    if config.video_arch == "conv2plus1d-4":
        return Conv2Plus1D4(config.video_widths, energy=config.video_energy)
    if config.video_arch == "summary2d-4":
        return ClipSummary2D4(config.video_widths, change_only=config.video_summary == "change")
    raise ValueError(
        "video_arch must be 'r2plus1d-18', 'conv2plus1d-4' or 'summary2d-4', "
        f"got {config.video_arch!r}"
    )


def build_audio_encoder(config: ModelConfig, freq_bins: int) -> Conv2D10 | Conv2D10Spectrum:
    if config.audio_arch == "conv2d-10":
        return Conv2D10(config.audio_widths)
    if config.audio_arch == "conv2d-10+spectrum":
        return Conv2D10Spectrum(config.audio_widths, freq_bins)
    raise ValueError(
        f"audio_arch must be 'conv2d-10' or 'conv2d-10+spectrum', got {config.audio_arch!r}"
    )


class ProjectionHead(nn.Module):
    """Linear-ReLU-Linear-ReLU-Linear: ``(B, in) -> (B, out)``.

    ``norm="none"`` (the paper): biases, no normalisation layer. ``norm="batch"``: each linear
    layer is followed by BatchNorm1d (no bias before it; the last BN has no affine), so every
    output dimension is centred over the batch and no input-independent direction can dominate
    the embedding.
    """

    def __init__(
        self, in_dim: int = 512, hidden: int = 512, out_dim: int = 128, norm: HeadNorm = "none"
    ) -> None:
        super().__init__()
        if norm == "none":
            self.projection = nn.Sequential(
                nn.Linear(in_dim, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, out_dim),
            )
        elif norm == "batch":
            self.projection = nn.Sequential(
                nn.Linear(in_dim, hidden, bias=False),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, hidden, bias=False),
                nn.BatchNorm1d(hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, out_dim, bias=False),
                nn.BatchNorm1d(out_dim, affine=False),
            )
        else:
            raise ValueError(f"head norm must be 'none' or 'batch', got {norm!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)


class AVIDModel(nn.Module):
    """Video encoder + audio encoder + one projection head per modality.

    ``encode_video``: ``(B, 3, T, H, W)`` float, ImageNet-normalised -> ``(B, embed_dim)``.
    ``encode_audio``: ``(B, 1, 200, 257)`` normalised log spectrogram -> ``(B, embed_dim)``.
    Both outputs are L2-normalised. ``forward(video, audio)`` returns both, for training.

    The model also carries the preprocessing it was trained with (``preprocess``) and the
    per-frequency spectrogram statistics (``spectrogram_stats``), so a checkpoint alone rebuilds
    the whole path from a media file to vectors.
    """

    def __init__(
        self,
        config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        spectrogram_stats: SpectrogramStats | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.preprocess = preprocess or PreprocessConfig()
        self.spectrogram_stats = spectrogram_stats or SpectrogramStats.identity(
            self.preprocess.freq_bins
        )
        # Stamped on every vector by the service; set from the content hash when loaded.
        self.model_version = f"{config.name}-untrained"
        self.video_encoder = build_video_encoder(config)
        self.audio_encoder = build_audio_encoder(config, self.preprocess.freq_bins)
        self.video_head = ProjectionHead(
            self.video_encoder.out_dim, config.head_hidden, config.embed_dim, config.head_norm
        )
        self.audio_head = ProjectionHead(
            self.audio_encoder.out_dim, config.head_hidden, config.embed_dim, config.head_norm
        )

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video_head(self.video_encoder(x)), dim=1)

    def encode_audio(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_head(self.audio_encoder(x)), dim=1)

    def video_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone feature maps per stage (``stem``, ``conv2x``..``conv5x``), for probes."""
        return self.video_encoder.forward_features(x)

    def audio_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone feature maps per stage (``stem``, ``block1``..``block4``), for probes."""
        return self.audio_encoder.forward_features(x)

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_video(video), self.encode_audio(audio)
