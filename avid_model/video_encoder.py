"""R(2+1)D-18, the AVID variant (AVID_SPEC.md §1), not torchvision's ``r2plus1d_18``.

Differences from torchvision: a full 3-D stem, a (2+1)D middle width equal to the block's
output width, two factorised convolution pairs per block with the batch norm after the
residual sum, a 1x1x1 shortcut without batch norm, and global max pooling.
Module names follow the reference checkpoint layout so that importing one is a prefix rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

VIDEO_STAGES = ("conv2x", "conv3x", "conv4x", "conv5x")

# How a block's (3x1x1) temporal convolutions mix channels: "full" (the paper's, every input
# channel at every tap) or "depthwise" (one 3-tap filter per channel, groups = channels; the
# channel mixing stays in the 1x3x3 spatial convolutions). See docs/results.md for why the
# tiny configuration uses "depthwise".
TemporalMixing = Literal["full", "depthwise"]
VideoArch = Literal["r2plus1d-18", "conv2plus1d-4", "summary2d-4"]


class R2Plus1DBlock(nn.Module):
    """One residual block: two (spatial 1x3x3, temporal 3x1x1) pairs, BN after the sum.

    Input ``(B, in, T, H, W)``; output ``(B, out, T/s, H/s, W/s)`` (ceil) for stride ``s``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        temporal: TemporalMixing = "full",
    ) -> None:
        super().__init__()
        if temporal not in ("full", "depthwise"):
            raise ValueError(f"temporal must be 'full' or 'depthwise', got {temporal!r}")
        groups = out_channels if temporal == "depthwise" else 1
        self.spt_conv1 = nn.Conv3d(
            in_channels, out_channels, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False
        )
        self.spt_bn1 = nn.BatchNorm3d(out_channels)
        self.tmp_conv1 = nn.Conv3d(
            out_channels,
            out_channels,
            (3, 1, 1),
            (stride, 1, 1),
            (1, 0, 0),
            bias=False,
            groups=groups,
        )
        self.tmp_bn1 = nn.BatchNorm3d(out_channels)
        self.spt_conv2 = nn.Conv3d(out_channels, out_channels, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.spt_bn2 = nn.BatchNorm3d(out_channels)
        self.tmp_conv2 = nn.Conv3d(
            out_channels, out_channels, (3, 1, 1), 1, (1, 0, 0), bias=False, groups=groups
        )
        self.out_bn = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.res_conv: nn.Conv3d | None = None
        if in_channels != out_channels or stride != 1:
            self.res_conv = nn.Conv3d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.res_conv is None else self.res_conv(x)
        y = self.relu(self.spt_bn1(self.spt_conv1(x)))
        y = self.relu(self.tmp_bn1(self.tmp_conv1(y)))
        y = self.relu(self.spt_bn2(self.spt_conv2(y)))
        y = self.tmp_conv2(y)
        return self.relu(self.out_bn(y + shortcut))


class R2Plus1D18(nn.Module):
    """The AVID video encoder. Input ``(B, 3, T, H, W)``; output ``(B, widths[-1])``.

    ``widths`` = (stem, conv2x, conv3x, conv4x, conv5x); the paper's model uses
    (64, 64, 128, 256, 512), 15,379,136 parameters, with ``temporal="full"``.
    """

    def __init__(
        self, widths: Sequence[int] = (64, 64, 128, 256, 512), temporal: TemporalMixing = "full"
    ) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"video widths need 5 entries (stem + 4 stages), got {len(widths)}")
        stem = widths[0]
        self.conv1 = nn.Sequential(
            nn.Conv3d(3, stem, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )
        channels = stem
        stages: list[nn.Sequential] = []
        for index, width in enumerate(widths[1:]):
            stride = 1 if index == 0 else 2
            stages.append(
                nn.Sequential(
                    R2Plus1DBlock(channels, width, stride, temporal),
                    R2Plus1DBlock(width, width, temporal=temporal),
                )
            )
            channels = width
        self.conv2x, self.conv3x, self.conv4x, self.conv5x = stages
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.out_dim = channels

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-stage feature maps: ``stem`` and ``conv2x``..``conv5x``, each ``(B, C, T, H, W)``."""
        features = {"stem": self.conv1(x)}
        y = features["stem"]
        for name in VIDEO_STAGES:
            y = getattr(self, name)(y)
            features[name] = y
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        y = self.conv5x(self.conv4x(self.conv3x(self.conv2x(y))))
        return torch.flatten(self.pool(y), 1)


class FrameDifference(nn.Module):
    """Each frame beside its difference from the clip's mean frame: ``(B, 3, T, H, W) -> 6``.

    What changes within a clip (a pulsing digit, a moving hand) stands out of what stays
    (background, still objects): TSN's RGB-difference input, taken against the clip mean so
    every frame gets one. With ``energy``, also each pixel's temporal standard deviation over
    the clip (its "motion energy", the same in every frame; 9 channels): one picture of all
    that changes in the clip, whole in every frame wherever in the window the change falls.
    No parameters.
    """

    def __init__(self, energy: bool = False) -> None:
        super().__init__()
        self.energy = energy
        self.out_channels = 9 if energy else 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=2, keepdim=True)
        if not self.energy:
            return torch.cat([x, centred], dim=1)
        energy = centred.pow(2).mean(dim=2, keepdim=True).add(1e-6).sqrt()
        return torch.cat([x, centred, energy.expand_as(x)], dim=1)


class DepthwiseTemporalConv(nn.Module):
    """A depthwise (3x1x1) temporal convolution, zero-padded, no bias, as three shifted sums.

    The same function and weight layout (``(C, 1, 3, 1, 1)``) as
    ``nn.Conv3d(C, C, (3, 1, 1), padding=(1, 0, 0), groups=C, bias=False)``, whose grouped
    kernel costs on a CPU about as much as a full convolution; three multiply-adds per element
    cost a few percent of the tower's step.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        reference = nn.Conv3d(channels, channels, (3, 1, 1), groups=channels, bias=False)
        self.weight = nn.Parameter(reference.weight.detach().clone())  # the Conv3d's init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.view(1, -1, 3, 1, 1)
        padded = F.pad(x, (0, 0, 0, 0, 1, 1))
        frames = x.shape[2]
        return (
            padded[:, :, :frames] * w[:, :, 0:1]
            + padded[:, :, 1 : frames + 1] * w[:, :, 1:2]
            + padded[:, :, 2:] * w[:, :, 2:3]
        )


class Conv2Plus1D4(nn.Module):
    """A 4-layer (2+1)D CNN for CPU-sized runs (``avid-lite``), not part of the paper.

    Each stage: a 1x3x3 convolution with spatial stride 2, a depthwise 3x1x1 temporal
    convolution (one 3-tap filter per channel; not in conv2x, whose map is the largest:
    "top-heavy", as S3D found temporal convolutions pay off in the upper layers), batch norm,
    ReLU; the input is the frames and
    their difference from the clip mean (:class:`FrameDifference`); global max pooling.
    ``widths`` = (conv2x, conv3x, conv4x, conv5x); stage names match :class:`R2Plus1D18`, so
    the probes of ``training.evaluate`` read the same keys. docs/video_tower.md says why a tower
    this shallow is the one that learns AV-Digits in a CPU budget.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 64, 128), energy: bool = False) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"conv2plus1d-4 widths need 4 entries, got {len(widths)}")
        self.conv1 = FrameDifference(energy)
        channels = self.conv1.out_channels
        stages: list[nn.Sequential] = []
        for index, width in enumerate(widths):
            layers: list[nn.Module] = [
                nn.Conv3d(channels, width, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
            ]
            if index > 0:  # top-heavy: no temporal conv on the largest map (S3D's finding)
                layers.append(DepthwiseTemporalConv(width))
            layers += [nn.BatchNorm3d(width), nn.ReLU(inplace=True)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.conv2x, self.conv3x, self.conv4x, self.conv5x = stages
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.out_dim = channels

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``stem`` (the 6-channel input) and ``conv2x``..``conv5x``, each ``(B, C, T, H, W)``."""
        features = {"stem": self.conv1(x)}
        y = features["stem"]
        for name in VIDEO_STAGES:
            y = getattr(self, name)(y)
            features[name] = y
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv5x(self.conv4x(self.conv3x(self.conv2x(self.conv1(x)))))
        return torch.flatten(self.pool(y), 1)


class ClipSummary(nn.Module):
    """One picture of a clip: per-pixel statistics over time, ``(B, 3, T, H, W) -> (B, 12, H, W)``.

    The mean frame (what stays), and of each pixel's change from it the standard deviation,
    the maximum and the minimum over the clip (what changes, how much, which way): a
    dynamic image (Bilen et al., 2016) made of fixed moments instead of rank pooling. A digit
    that pulses for three of sixteen frames stands out whole in the last nine channels,
    wherever in the window its pulse falls; the background and still objects cancel there.
    ``change_only`` drops the mean frame (9 channels): a tower that sees only what changes, and
    so cannot tell clips apart by their still colours and backgrounds. No parameters.
    """

    def __init__(self, change_only: bool = False) -> None:
        super().__init__()
        self.change_only = change_only
        self.out_channels = 9 if change_only else 12

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=2)
        centred = x - mean.unsqueeze(2)
        std = centred.pow(2).mean(dim=2).add(1e-6).sqrt()
        change = [std, centred.amax(dim=2), centred.amin(dim=2)]
        return torch.cat(change if self.change_only else [mean, *change], dim=1)


class ClipSummary2D4(nn.Module):
    """A 4-stage 2-D CNN on a clip's :class:`ClipSummary` picture (``summary2d-4``; not the paper).

    Time is summarised before any convolution, so the tower costs what one frame's CNN costs
    (about 1/16 of :class:`Conv2Plus1D4` on 16 frames) and has no temporal layer to learn
    through; it sees when nothing happens within the clip, only what and where. Each stage: a
    3x3 convolution with stride 2, batch norm, ReLU; global max pooling. Stage outputs keep a
    time axis of length 1 (``(B, C, 1, H, W)``), so the probes of ``training.evaluate`` read the
    same ``conv2x``..``conv5x`` keys as from the other towers.
    """

    def __init__(
        self, widths: Sequence[int] = (32, 64, 64, 128), change_only: bool = False
    ) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"summary2d-4 widths need 4 entries, got {len(widths)}")
        self.conv1 = ClipSummary(change_only)
        channels = self.conv1.out_channels
        stages: list[nn.Sequential] = []
        for width in widths:
            stages.append(
                nn.Sequential(
                    nn.Conv2d(channels, width, 3, 2, 1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
            channels = width
        self.conv2x, self.conv3x, self.conv4x, self.conv5x = stages
        self.out_dim = channels

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``stem`` (the 12-channel picture), ``conv2x``..``conv5x``: each ``(B, C, 1, H, W)``."""
        y = self.conv1(x)
        features = {"stem": y.unsqueeze(2)}
        for name in VIDEO_STAGES:
            y = getattr(self, name)(y)
            features[name] = y.unsqueeze(2)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv5x(self.conv4x(self.conv3x(self.conv2x(self.conv1(x)))))
        return y.amax(dim=(2, 3))
