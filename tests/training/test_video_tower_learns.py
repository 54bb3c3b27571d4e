"""Does the tiny video tower learn AV-Digits' video task when it is told the labels? (issue 8)

A small AV-Digits set is rendered straight from the generator (frames only, no file), and a
tower plus a linear classifier is trained on it with cross-entropy for a few hundred steps.
The task (name the digit that pulses) needs no sound once the labels are given.

- The positive control, a 4-layer per-frame 2-D CNN with a max over time and space, must
  learn it: this proves the set, the budget and the threshold are fair.
- ``avid-lite``'s and ``avid-summary``'s towers (the registered CPU configurations) must learn
  it too, on the frames at their own 32 px.
- ``avid-tiny``'s R(2+1)D tower is held to the same bar. It does not reach it today (see
  docs/video_tower.md), so it is a strict xfail: the day it learns, this test fails and the
  marker must go.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avid_model.registry import create_model
from training.avdigits_clip import RenderSettings, synthesize_clip

SIZE, FRAMES, FIRST = 48, 12, 3  # frames 3..14 of 20 at 8 fps hold every clip's pulse
TRAIN, TEST, STEPS, BATCH = 1200, 200, 220, 32
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)
BAR = 0.3  # test accuracy; chance is 0.1 (one standard error there: 0.021)


def _render(split: str, count: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    settings = RenderSettings(size=SIZE, fps=8.0)
    frames, labels = [], []
    for i in range(count):
        clip = synthesize_clip(offset + i, split, i % 10, seed=0, settings=settings)
        frames.append(clip.frames[FIRST : FIRST + FRAMES])
        labels.append(clip.record.label)
    x = torch.from_numpy(np.stack(frames)).permute(0, 4, 1, 2, 3).float() / 255.0
    return (x - MEAN) / STD, torch.tensor(labels)


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {"train": _render("train", TRAIN, 0), "test": _render("test", TEST, 10_000)}


class PerFrameCNN(nn.Module):
    """4 x (1x3x3 conv stride 2, BN, ReLU), then a max over time and space: (B, 128)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in (32, 64, 64, 128):
            layers += [
                nn.Conv3d(channels, width, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False),
                nn.BatchNorm3d(width),
                nn.ReLU(),
            ]
            channels = width
        self.body = nn.Sequential(*layers)
        self.out_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).amax(dim=(2, 3, 4))


def _tower(name: str) -> nn.Module:
    if name == "per-frame-cnn":
        return PerFrameCNN()
    return create_model(name).video_encoder


def _fit_and_score(tower: nn.Module, data: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> float:
    net = nn.Sequential(tower, nn.Linear(tower.out_dim, 10))  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data["train"]
    generator = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        idx = torch.randint(0, len(x), (BATCH,), generator=generator)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    xt, yt = data["test"]
    with torch.no_grad():
        return float((net(xt).argmax(1) == yt).float().mean())


def _at_side(data: dict[str, tuple[torch.Tensor, torch.Tensor]], side: int) -> dict[str, Any]:
    """The same clips with every frame resized to ``side`` pixels (a model's crop size)."""
    out: dict[str, Any] = {}
    for split, (x, y) in data.items():
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        frames = F.interpolate(frames, size=(side, side), mode="bilinear", antialias=True)
        out[split] = (frames.reshape(b, t, c, side, side).transpose(1, 2).contiguous(), y)
    return out


@pytest.mark.parametrize("name", ["avid-lite", "avid-summary"])
def test_registered_cpu_video_tower_learns(
    name: str, digits: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> None:
    side = create_model(name).preprocess.crop_size
    accuracy = _fit_and_score(_tower(name), _at_side(digits, side))
    assert accuracy >= BAR, f"test accuracy {accuracy:.3f}, chance 0.1"


def test_positive_control_learns(digits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    accuracy = _fit_and_score(_tower("per-frame-cnn"), digits)
    assert accuracy >= BAR, f"test accuracy {accuracy:.3f}, chance 0.1"


@pytest.mark.xfail(
    strict=True,
    reason="issue 8: avid-tiny's R(2+1)D tower stays near chance (docs/video_tower.md)",
)
def test_avid_tiny_video_tower_learns(
    digits: dict[str, tuple[torch.Tensor, torch.Tensor]],
) -> None:
    accuracy = _fit_and_score(_tower("avid-tiny"), digits)
    assert accuracy >= BAR, f"test accuracy {accuracy:.3f}, chance 0.1"
