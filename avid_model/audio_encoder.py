"""Conv2D-10, the AVID audio encoder on log spectrograms (AVID_SPEC.md §1).

Input ``(B, 1, 200, 257)`` = (channel, time frames, frequency bins). Module names follow the
reference checkpoint layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

AUDIO_STAGES = ("block1", "block2", "block3", "block4")


class ConvBlock2d(nn.Module):
    """conv3x3 (stride s) -> BN -> ReLU -> conv3x3 -> BN -> ReLU; no residual."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class Conv2D10(nn.Module):
    """The AVID audio encoder. Input ``(B, 1, 200, 257)``; output ``(B, widths[-1])``.

    ``widths`` = (stem, block1..block4); the paper's model uses (64, 64, 128, 256, 512),
    4,725,696 parameters. Strides: stem 2, blocks 2, 2, 2, 1.
    """

    def __init__(self, widths: Sequence[int] = (64, 64, 128, 256, 512)) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"audio widths need 5 entries (stem + 4 blocks), got {len(widths)}")
        self.conv1 = nn.Sequential(
            nn.Conv2d(1, widths[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.block1 = ConvBlock2d(widths[0], widths[1], 2)
        self.block2 = ConvBlock2d(widths[1], widths[2], 2)
        self.block3 = ConvBlock2d(widths[2], widths[3], 2)
        self.block4 = ConvBlock2d(widths[3], widths[4], 1)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.out_dim = widths[4]

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-stage feature maps: ``stem`` and ``block1``..``block4``, each ``(B, C, T, F)``."""
        features = {"stem": self.conv1(x)}
        y = features["stem"]
        for name in AUDIO_STAGES:
            y = getattr(self, name)(y)
            features[name] = y
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block4(self.block3(self.block2(self.block1(self.conv1(x)))))
        return torch.flatten(self.pool(y), 1)


def _conv1d_out(length: int, kernel: int = 5, stride: int = 2, padding: int = 2) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class SpectrumSummary(nn.Module):
    """One spectrum per clip: each frequency bin's max, mean and std over time.

    Input ``(B, 1, T, F)`` normalised log spectrogram -> ``(B, 3, F)`` -> a 1-D CNN over
    frequency (5-tap, stride 2, BN, ReLU per layer; positions kept, no pooling over frequency)
    -> flatten -> linear + BN + ReLU -> ``(B, out_dim)``. The audio analogue of the video
    tower's :class:`~avid_model.video_encoder.ClipSummary`: a random Conv2D-10 with a global
    max over time *and frequency* starts blind to the spoken word (cosine kNN at chance on
    AV-Digits), while the spectrum's max over time alone tells the digit apart (kNN 0.69), and
    this path keeps where in frequency the energy lies (docs/video_tower.md).
    """

    def __init__(
        self, freq_bins: int, widths: Sequence[int] = (32, 64, 64), out_dim: int = 128
    ) -> None:
        super().__init__()
        if freq_bins < 1 or not widths or out_dim < 1:
            raise ValueError(f"need freq_bins, widths and out_dim > 0, got {freq_bins}, {widths}")
        layers: list[nn.Module] = []
        channels, length = 3, freq_bins
        for width in widths:
            layers += [
                nn.Conv1d(channels, width, 5, 2, 2, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
            ]
            channels, length = width, _conv1d_out(length)
        self.body = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Linear(channels * length, out_dim, bias=False),
            nn.BatchNorm1d(out_dim),
            nn.ReLU(inplace=True),
        )
        self.out_dim = out_dim

    @staticmethod
    def summary(x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T, F)`` -> ``(B, 3, F)``: max, mean and std over time per frequency bin."""
        spec = x[:, 0]
        return torch.stack([spec.amax(dim=1), spec.mean(dim=1), spec.std(dim=1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.body(self.summary(x)), 1))


class Conv2D10Spectrum(nn.Module):
    """Conv2D-10 beside a :class:`SpectrumSummary`, their features concatenated.

    Output ``(B, widths[-1] + spectrum_dim)``; ``forward_features`` gives Conv2D-10's stages
    (the probes read those), so a probe of ``block4`` sees only the 2-D path.

    ``path_dropout`` (training only, 0 by default; not part of the architecture or the
    checkpoint): in train mode each clip's spectrum features are zeroed with this probability
    and the kept ones scaled by ``1 / (1 - p)``, as dropout does, so that the 2-D path has to
    carry the clip on its own for those clips. Without it the spectrum path, which learns the
    spoken digit in a few hundred steps, takes the whole loss away from Conv2D-10
    (docs/video_tower.md).
    """

    def __init__(self, widths: Sequence[int], freq_bins: int, spectrum_dim: int = 128) -> None:
        super().__init__()
        self.conv = Conv2D10(widths)
        self.spectrum = SpectrumSummary(freq_bins, out_dim=spectrum_dim)
        self.out_dim = self.conv.out_dim + self.spectrum.out_dim
        self.path_dropout = 0.0

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.conv.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = self.spectrum(x)
        if self.training and self.path_dropout > 0.0:
            keep = torch.rand(x.shape[0], 1, device=x.device) >= self.path_dropout
            spectrum = spectrum * keep.to(spectrum.dtype) / (1.0 - self.path_dropout)
        return torch.cat([self.conv(x), spectrum], dim=1)
