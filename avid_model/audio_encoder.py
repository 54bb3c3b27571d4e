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
