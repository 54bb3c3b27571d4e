"""Model inputs from decoded media: preprocessing settings, log spectrograms, video clip tensors.

Follows AVID_SPEC section 2. One path for training, evaluation and serving; the settings
(`PreprocessConfig`) and the per-bin spectrogram statistics (`SpectrogramStats`) travel with a
checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torchaudio.functional as AF
import torchvision.transforms.v2.functional as TF


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings that turn decoded frames and waveforms into model inputs."""

    fps: float = 16.0
    clip_frames: int = 8
    crop_size: int = 112
    sample_rate: int = 24000
    audio_seconds: float = 2.0
    n_fft: int = 1024
    hop_length: int = 240
    spec_frames: int = 200
    freq_bins: int = 257
    top_db: float = 100.0
    amin: float = 1e-10
    video_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    video_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @property
    def resize_short(self) -> int:
        """Short side before the centre crop at test time: round(crop_size / 0.875)."""
        return round(self.crop_size / 0.875)

    @property
    def audio_samples(self) -> int:
        """Samples in one audio window (48,000 by default)."""
        return round(self.sample_rate * self.audio_seconds)

    @property
    def clip_seconds(self) -> float:
        """Length of one video clip in seconds (0.5 by default)."""
        return self.clip_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown PreprocessConfig keys: {sorted(unknown)}")
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**kwargs)


def _fit_length(waveform: torch.Tensor, n: int) -> torch.Tensor:
    """(B, N') -> (B, n): zero-pad at the end or trim."""
    if waveform.shape[-1] >= n:
        return waveform[..., :n]
    return torch.nn.functional.pad(waveform, (0, n - waveform.shape[-1]))


def log_spectrogram(waveform: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Log-power spectrogram as AVID_SPEC section 2 defines it.

    Args:
        waveform: (N,) or (B, N) mono audio at `cfg.sample_rate`; padded/trimmed to
            `cfg.audio_samples`.
    Returns:
        (B, 1, spec_frames=200, freq_bins=257) float32 in dB, each example clamped to its own
        max - top_db.
    """
    x = waveform.to(torch.float32)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"waveform must be (N,) or (B, N), got {tuple(waveform.shape)}")
    x = _fit_length(x, cfg.audio_samples)
    power = AF.spectrogram(
        x,
        pad=0,
        window=torch.hann_window(cfg.n_fft, device=x.device),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.n_fft,
        power=2.0,
        normalized=False,
        center=True,
    )  # (B, n_fft/2 + 1, frames)
    pairs = (power[:, 1::2] + power[:, 2::2]) / 2  # bins (1,2), (3,4), ... (511,512)
    power = torch.cat([power[:, :1], pairs], dim=1)[:, : cfg.freq_bins, : cfg.spec_frames]
    if power.shape[1:] != (cfg.freq_bins, cfg.spec_frames):
        raise ValueError(
            f"settings give a {tuple(power.shape[1:])} spectrogram, "
            f"expected ({cfg.freq_bins}, {cfg.spec_frames})"
        )
    # (B, 1, F, T): amplitude_to_DB clamps top_db over the last three dims, i.e. per example.
    db = AF.amplitude_to_DB(
        power.unsqueeze(1),
        multiplier=10.0,
        amin=cfg.amin,
        db_multiplier=math.log10(max(cfg.amin, 1.0)),
        top_db=cfg.top_db,
    )
    return db.transpose(2, 3).contiguous()


@dataclass(frozen=True, eq=False)  # tensors: compare mean/std explicitly
class SpectrogramStats:
    """Per-frequency-bin mean and std of training log spectrograms, each (freq_bins,)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def identity(cls, freq_bins: int = 257) -> SpectrogramStats:
        """Mean 0, std 1: `normalize` leaves spectrograms unchanged."""
        return cls(mean=torch.zeros(freq_bins), std=torch.ones(freq_bins))

    def normalize(self, spec: torch.Tensor) -> torch.Tensor:
        """(..., freq_bins) -> same shape, (spec - mean) / std per frequency bin."""
        mean = self.mean.to(device=spec.device, dtype=spec.dtype)
        std = self.std.to(device=spec.device, dtype=spec.dtype)
        return (spec - mean) / std

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> SpectrogramStats:
        mean = torch.tensor(list(data["mean"]), dtype=torch.float32)
        std = torch.tensor(list(data["std"]), dtype=torch.float32)
        if mean.shape != std.shape or mean.dim() != 1:
            raise ValueError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} must match")
        return cls(mean=mean, std=std)


def compute_spectrogram_stats(
    spectrograms: Iterable[torch.Tensor], *, eps: float = 1e-5
) -> SpectrogramStats:
    """Per-bin mean and std over every frame of every spectrogram, one pass, float64 sums.

    Args:
        spectrograms: batches shaped (..., freq_bins), e.g. (B, 1, 200, 257).
        eps: floor for the std (a constant bin must not divide by zero).
    Returns:
        SpectrogramStats with float32 (freq_bins,) mean and std.
    """
    total: torch.Tensor | None = None
    total_sq: torch.Tensor | None = None
    count = 0
    for spec in spectrograms:
        rows = spec.detach().reshape(-1, spec.shape[-1]).to(torch.float64)
        if total is None or total_sq is None:
            total = torch.zeros(rows.shape[1], dtype=torch.float64, device=rows.device)
            total_sq = torch.zeros_like(total)
        total += rows.sum(0)
        total_sq += (rows * rows).sum(0)
        count += rows.shape[0]
    if total is None or total_sq is None or count == 0:
        raise ValueError("compute_spectrogram_stats needs at least one spectrogram")
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0.0)
    std = var.sqrt().clamp_min(eps)
    return SpectrogramStats(mean=mean.float().cpu(), std=std.float().cpu())


def video_clip_to_tensor(
    frames: torch.Tensor, cfg: PreprocessConfig, *, train: bool = False
) -> torch.Tensor:
    """Test-time video preprocessing.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        train: training augmentation is not implemented here; True raises NotImplementedError.
    Returns:
        (3, T, crop_size, crop_size) float32: short side resized to `cfg.resize_short` (skipped
        when it already is), centre crop, /255, ImageNet mean/std.
    """
    if train:
        raise NotImplementedError("training augmentation lives with the training data pipeline")
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2)  # (T, 3, H, W)
    if min(x.shape[-2:]) != cfg.resize_short:
        x = TF.resize(x, [cfg.resize_short], antialias=True)
    x = TF.center_crop(x, [cfg.crop_size, cfg.crop_size])
    x = x.to(torch.float32) / 255.0
    mean = torch.tensor(cfg.video_mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.video_std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).permute(1, 0, 2, 3).contiguous()


def video_batch(clips: Sequence[torch.Tensor], cfg: PreprocessConfig) -> torch.Tensor:
    """Stack test-time clips: list of (T, H, W, 3) uint8 -> (B, 3, T, crop, crop) float32."""
    return torch.stack([video_clip_to_tensor(c, cfg) for c in clips])


def audio_batch(
    waveforms: Sequence[torch.Tensor | None],
    cfg: PreprocessConfig,
    stats: SpectrogramStats | None = None,
) -> torch.Tensor:
    """Waveforms (N,) (None: no audio track, becomes silence) -> (B, 1, 200, 257) normalised."""
    x = torch.stack(
        [
            _fit_length(w.to(torch.float32), cfg.audio_samples)
            if w is not None
            else torch.zeros(cfg.audio_samples)
            for w in waveforms
        ]
    )
    spec = log_spectrogram(x, cfg)
    return stats.normalize(spec) if stats is not None else spec
