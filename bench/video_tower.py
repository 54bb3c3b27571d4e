"""Which video towers learn AV-Digits' video task from the labels (issue 8's diagnosis).

    .venv/bin/python -m bench.video_tower --data data/avdigits                 # every variant
    .venv/bin/python -m bench.video_tower --data data/avdigits --variants cnn cnn+tmp-dw

Video only, supervised: a tower + a linear classifier, cross-entropy, Adam, batch 64, for
``--steps`` steps on the train split (a random 16-frame window of the first 20 frames at 8 fps,
a random resized crop of scale 0.7-1 from 73 px to 64, ImageNet normalisation); scored on the
test split (centred window, centre crop). The train split is decoded once into memory.
Prints train accuracy (mean of the last 25 batches), the accuracy on 300 train clips scored
like the test split (high there and chance on test: memorised), test accuracy and seconds;
``--eval-every N`` also scores the test split every N steps (the ``curve`` in the JSON; its
seconds then include those evaluations).

Variants: ``cnn`` is a 4-layer per-frame 2-D CNN (1x3x3 conv stride 2 + BN + ReLU; widths
32, 64, 64, 128) with a max over time and space; ``+tmp-full`` puts a full (3x1x1)
temporal convolution after every spatial one (before the BN, so no extra non-linearity),
``+tmp-full-id`` the same initialised to the identity, ``+tmp-dw`` a depthwise one (one
3-tap filter per channel), ``+mix1x1`` a 1x1x1 channel mixing instead (no time),
``8-layer`` four more stride-1 layers, ``k5`` 5x5 spatial kernels (a receptive field of 61 px,
nearly the whole 64 px frame, against 31 px with 3x3). ``r2p1d-tiny`` is ``avid-tiny``'s
R(2+1)D tower, ``-dw`` with depthwise temporal convolutions, ``-dw@conv3x`` / ``@conv4x`` that
tower cut after conv3x / conv4x (a global max over that map: fewer layers and parameters).
``+diff`` feeds the tower each frame beside its difference from the clip's mean frame (TSN's
RGB difference; ``avid-lite``'s input), ``avid-lite`` is that registered tower.
``-zi`` zero-initialises every block's last temporal convolution, so the residual branch
starts at zero and each block as ``relu(out_bn(shortcut))`` (batch norm follows the sum here;
torchvision's ``zero_init_residual`` zeroes a BN before the sum instead); ``/32`` resizes the
64 px crops to 32 px (bilinear, antialiased) inside the tower, a quarter of the pixels.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn

from avid_model.registry import create_model
from avid_model.video_encoder import VIDEO_STAGES, ClipSummary2D4, Conv2Plus1D4, R2Plus1D18
from bench.common import markdown_table, write_json
from training.clips import decode_media

FRAMES, WINDOW, SIDE, CROP = 20, 16, 73, 64
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)


class FrameCNN(nn.Module):
    """Per-frame CNN; ``temporal`` adds a (3x1x1) or (1x1x1) conv after each spatial one."""

    def __init__(
        self, temporal: str = "none", layers: int = 4, kernel: int = 3, in_channels: int = 3
    ) -> None:
        super().__init__()
        widths = [32, 64, 64, 128] + [128] * (layers - 4)
        body: list[nn.Module] = []
        channels = in_channels
        for k, width in enumerate(widths):
            stride = 2 if k < 4 else 1
            body.append(
                nn.Conv3d(
                    channels,
                    width,
                    (1, kernel, kernel),
                    (1, stride, stride),
                    (0, kernel // 2, kernel // 2),
                    bias=False,
                )
            )
            if temporal in ("full", "full-id", "dw"):
                groups = width if temporal == "dw" else 1
                conv = nn.Conv3d(width, width, (3, 1, 1), 1, (1, 0, 0), bias=False, groups=groups)
                if temporal == "full-id":
                    with torch.no_grad():
                        conv.weight.zero_()
                        conv.weight[:, :, 1, 0, 0] = torch.eye(width)
                body.append(conv)
            elif temporal == "mix1x1":
                body.append(nn.Conv3d(width, width, 1, bias=False))
            body += [nn.BatchNorm3d(width), nn.ReLU()]
            channels = width
        self.body = nn.Sequential(*body)
        self.out_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).amax(dim=(2, 3, 4))


def _tiny(temporal: str) -> R2Plus1D18:
    widths = create_model("avid-tiny").config.video_widths
    return R2Plus1D18(widths, "depthwise" if temporal == "dw" else "full")


def _tiny6(temporal: str) -> R2Plus1D18:
    """``avid-tiny``'s tower with a 6-channel stem (frames and their differences)."""
    tower = _tiny(temporal)
    old = tower.conv1[0]
    assert isinstance(old, nn.Conv3d)
    shape: dict[str, Any] = {k: getattr(old, k) for k in ("kernel_size", "stride", "padding")}
    tower.conv1[0] = nn.Conv3d(6, old.out_channels, bias=False, **shape)
    return tower


class Truncated(nn.Module):
    """An R(2+1)D tower cut after ``stage``, with a global max over that stage's map."""

    def __init__(self, tower: R2Plus1D18, stage: str) -> None:
        super().__init__()
        kept = [getattr(tower, name) for name in VIDEO_STAGES[: VIDEO_STAGES.index(stage) + 1]]
        self.body = nn.Sequential(tower.conv1, *kept)
        self.out_dim = kept[-1][-1].out_bn.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).amax(dim=(2, 3, 4))


def _zero_init(tower: R2Plus1D18) -> R2Plus1D18:
    """Every block's last temporal convolution set to zero: its residual branch starts at zero."""
    for stage in VIDEO_STAGES:
        for block in getattr(tower, stage):
            nn.init.zeros_(block.tmp_conv2.weight)
    return tower


class Downsampled(nn.Module):
    """A tower fed frames resized to ``side`` pixels (bilinear, antialiased)."""

    def __init__(self, tower: nn.Module, side: int) -> None:
        super().__init__()
        self.tower, self.side = tower, side
        self.out_dim = tower.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        frames = F.interpolate(frames, size=(self.side, self.side), mode="bilinear", antialias=True)
        return self.tower(frames.reshape(b, t, c, self.side, self.side).transpose(1, 2))


class WithDifference(nn.Module):
    """Feeds a tower each frame beside its difference from the clip's mean frame (6 channels).

    What changes in a clip (the pulsing digit) stands out of what stays (background, the
    resting distractor): TSN's RGB-difference input, taken against the clip mean.
    """

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.out_dim = tower.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(torch.cat([x, x - x.mean(dim=2, keepdim=True)], dim=1))


class WithEnergy(nn.Module):
    """Adds each pixel's temporal standard deviation (the clip's "motion energy") to every frame.

    Frames, their difference from the clip mean, and one picture of what changes over the whole
    clip (9 channels): the pulsing digit's glyph stands out whole in the energy channels, in
    every frame, wherever its pulse falls in the window. No parameters.
    """

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.out_dim = tower.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=2, keepdim=True)
        energy = centred.pow(2).mean(dim=2, keepdim=True).add(1e-6).sqrt().expand_as(x)
        return self.tower(torch.cat([x, centred, energy], dim=1))


VARIANTS: dict[str, Callable[[], nn.Module]] = {
    "cnn": lambda: FrameCNN(),
    "cnn+tmp-full": lambda: FrameCNN("full"),
    "cnn+tmp-full-id": lambda: FrameCNN("full-id"),
    "cnn+tmp-dw": lambda: FrameCNN("dw"),
    "cnn+mix1x1": lambda: FrameCNN("mix1x1"),
    "cnn 8-layer": lambda: FrameCNN(layers=8),
    "cnn k5": lambda: FrameCNN(kernel=5),
    "r2p1d-tiny": lambda: _tiny("full"),
    "r2p1d-tiny-dw": lambda: _tiny("dw"),
    "r2p1d-tiny-dw@conv3x": lambda: Truncated(_tiny("dw"), "conv3x"),
    "r2p1d-tiny-dw@conv4x": lambda: Truncated(_tiny("dw"), "conv4x"),
    "r2p1d-tiny-zi": lambda: _zero_init(_tiny("full")),
    "r2p1d-tiny-dw-zi": lambda: _zero_init(_tiny("dw")),
    "r2p1d-tiny-dw-zi/32": lambda: Downsampled(_zero_init(_tiny("dw")), 32),
    "cnn+tmp-dw/32": lambda: Downsampled(FrameCNN("dw"), 32),
    "cnn/32": lambda: Downsampled(FrameCNN(), 32),
    "cnn+diff/32": lambda: Downsampled(WithDifference(FrameCNN(in_channels=6)), 32),
    "cnn+tmp-dw+diff/32": lambda: Downsampled(WithDifference(FrameCNN("dw", in_channels=6)), 32),
    "r2p1d-tiny+diff/32": lambda: Downsampled(WithDifference(_tiny6("full")), 32),
    "cnn+tmp-dw+energy/32": lambda: Downsampled(WithEnergy(FrameCNN("dw", in_channels=9)), 32),
    "cnn+energy/32": lambda: Downsampled(WithEnergy(FrameCNN(in_channels=9)), 32),
    "avid-lite+energy/32": lambda: Downsampled(Conv2Plus1D4((32, 64, 64, 128), energy=True), 32),
    "avid-lite/32": lambda: Downsampled(create_model("avid-lite").video_encoder, 32),
    "summary/32": lambda: Downsampled(ClipSummary2D4(), 32),
    "summary/64": lambda: ClipSummary2D4(),
    "summary-change/32": lambda: Downsampled(ClipSummary2D4(change_only=True), 32),
    "summary-wide/64": lambda: ClipSummary2D4((64, 128, 128, 256)),
}


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 20, 73, 73, 3) uint8 frames at 8 fps and (N,) labels of one manifest split."""
    cfg = replace(create_model("avid-tiny").preprocess, crop_size=CROP, clip_frames=WINDOW, fps=8)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    frames, labels = [], []
    for row in rows:
        if row.get("split") != split:
            continue
        clip = decode_media(root / row["path"], cfg).frames
        assert clip is not None, row["path"]
        clip = clip[:FRAMES]
        if clip.shape[0] < FRAMES:
            clip = torch.cat([clip, clip[-1:].expand(FRAMES - clip.shape[0], *clip.shape[1:])])
        frames.append(clip)
        labels.append(int(row["label"]))
    return torch.stack(frames), torch.tensor(labels)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float, ImageNet mean / std."""
    return (x.permute(0, 4, 1, 2, 3).float() / 255 - MEAN) / STD


def _colour(v: torch.Tensor) -> torch.Tensor:
    """One random colour change for a whole (T, 3, H, W) uint8 clip (the same in every frame)."""
    u = torch.empty(4).uniform_(0.6, 1.4)
    v = TF.adjust_brightness(v, float(u[0]))
    v = TF.adjust_contrast(v, float(u[1]))
    v = TF.adjust_saturation(v, float(u[2]))
    return TF.adjust_hue(v, float(u[3]) - 1.0)  # any hue: -0.4 .. 0.4 of the circle


def train_batch(frames: torch.Tensor, idx: torch.Tensor, colour: bool = False) -> torch.Tensor:
    out = []
    for i in idx.tolist():
        t0 = int(torch.randint(0, FRAMES - WINDOW + 1, ()))
        v = frames[i, t0 : t0 + WINDOW].permute(0, 3, 1, 2)
        scale = float(torch.empty(()).uniform_(0.7, 1.0))
        ratio = math.exp(float(torch.empty(()).uniform_(math.log(3 / 4), math.log(4 / 3))))
        w = min(SIDE, round(math.sqrt(scale * SIDE * SIDE * ratio)))
        h = min(SIDE, round(math.sqrt(scale * SIDE * SIDE / ratio)))
        y0 = int(torch.randint(0, SIDE - h + 1, ()))
        x0 = int(torch.randint(0, SIDE - w + 1, ()))
        v = TF.resized_crop(v, y0, x0, h, w, [CROP, CROP], antialias=True)
        if colour:
            v = _colour(v)
        out.append(v.permute(0, 2, 3, 1))
    return _normalise(torch.stack(out))


def test_inputs(frames: torch.Tensor) -> torch.Tensor:
    start = (FRAMES - WINDOW) // 2
    v = frames[:, start : start + WINDOW].permute(0, 1, 4, 2, 3).reshape(-1, 3, SIDE, SIDE)
    v = TF.center_crop(v, [CROP, CROP])
    return _normalise(v.reshape(frames.shape[0], WINDOW, 3, CROP, CROP).permute(0, 1, 3, 4, 2))


def test_accuracy(net: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Accuracy on the (already centred and cropped) test clips, in eval mode."""
    xt, yt = test
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xt), 100):
            correct += int((net(xt[i : i + 100]).argmax(1) == yt[i : i + 100]).sum())
    net.train()
    return correct / len(xt)


def run_variant(
    name: str,
    data: dict[str, tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    seed: int,
    eval_every: int = 0,
    colour: bool = False,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    tower = VARIANTS[name]()
    out_dim = tower.out_dim
    assert isinstance(out_dim, int)
    net = nn.Sequential(tower, nn.Linear(out_dim, 10))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    x, y = data["train"]
    started, accuracies, curve = time.perf_counter(), [], {}
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (64,))
        logits = net(train_batch(x, idx, colour))
        loss = F.cross_entropy(logits, y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracies.append(float((logits.argmax(1) == y[idx]).float().mean()))
        if eval_every and step % eval_every == 0 and step < steps:
            curve[step] = test_accuracy(net, data["test"])
            print(f"  {name} step {step}: test acc {curve[step]:.3f}", flush=True)
    seconds = time.perf_counter() - started
    curve[steps] = test_accuracy(net, data["test"])
    # The same centred, eval-mode inputs from train clips: high here and chance on the test
    # split means the tower memorised the train clips; low here too means it learnt nothing.
    seen = test_accuracy(net, data["train_eval"])
    last = accuracies[-25:]
    return {
        "variant": name + (" +colour" if colour else ""),
        "params": sum(p.numel() for p in net.parameters()),
        "steps": steps,
        "train acc (last 25)": sum(last) / len(last),
        "train acc (eval)": seen,
        "test acc": curve[steps],
        "curve": curve,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/avdigits"))
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--colour", action="store_true", help="a random colour change per train clip"
    )
    parser.add_argument(
        "--eval-every", type=int, default=0, help="also score the test split every N steps"
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/video_tower.json"))
    args = parser.parse_args()
    test_x, test_y = load_split(args.data, "test")
    train_x, train_y = load_split(args.data, "train")
    data = {
        "train": (train_x, train_y),
        "train_eval": (test_inputs(train_x[:300]), train_y[:300]),
        "test": (test_inputs(test_x), test_y),
    }
    rows = []
    for name in args.variants:
        rows.append(run_variant(name, data, args.steps, args.seed, args.eval_every, args.colour))
        print(json.dumps(rows[-1]), flush=True)
    columns = [
        "variant",
        "params",
        "steps",
        "train acc (last 25)",
        "train acc (eval)",
        "test acc",
        "seconds",
    ]
    print(markdown_table(rows, columns))
    write_json(
        args.json,
        {
            "machine": platform.platform(),
            "args": vars(args) | {"data": str(args.data), "json": str(args.json)},
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
