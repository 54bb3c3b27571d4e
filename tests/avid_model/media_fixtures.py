"""Synthetic media for decoding tests: every file is real, written with `write_media`.

Video frame k is a flat grey of brightness `STEP * k`, so a decoded frame tells which source
frame it came from; audio is silence with short clicks at known times, or sines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from avid_model.media_writer import write_media

STEP = 3  # brightness per source frame index: 86 distinct frames fit in uint8


def index_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(n, H, W, 3) uint8: frame k is flat with value STEP * (k % 86)."""
    values = (np.arange(n) % 86) * STEP
    return np.broadcast_to(values[:, None, None, None], (n, height, width, 3)).astype(np.uint8)


def frame_indices(frames: torch.Tensor) -> list[int]:
    """Source frame index of each decoded (T, H, W, 3) frame of `index_frames`."""
    return [round(v) for v in (frames.float().mean(dim=(1, 2, 3)) / STEP).tolist()]


def clicks(
    duration: float, sample_rate: int, times: Sequence[float], channels: int = 1
) -> np.ndarray:
    """(channels, N) silence with a 2 ms full-scale click starting at each time."""
    wave = np.zeros((channels, round(duration * sample_rate)), dtype=np.float32)
    width = max(1, round(0.002 * sample_rate))
    for t in times:
        i = round(t * sample_rate)
        wave[:, i : i + width] = 0.9
    return wave


def first_click(audio: torch.Tensor, sample_rate: int, threshold: float = 0.3) -> float:
    """Time in seconds of the first sample over `threshold` in a (N,) waveform."""
    above = (audio.abs() > threshold).nonzero()
    assert above.numel() > 0, "no click found"
    return int(above[0, 0]) / sample_rate


def sine(duration: float, sample_rate: int, freq: float, amplitude: float = 0.5) -> np.ndarray:
    """(N,) float32 sine wave."""
    t = np.arange(round(duration * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def av_file(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: float = 25.0,
    sample_rate: int = 48000,
    click_times: Sequence[float] = (1.0,),
    keyframe_interval: int | None = None,
    size: tuple[int, int] = (48, 64),
) -> Path:
    """An H.264 + AAC file (or any container the suffix names) with indexed frames and clicks."""
    write_media(
        path,
        video=index_frames(round(seconds * fps), *size),
        fps=fps,
        audio=clicks(seconds, sample_rate, click_times, channels=2),
        sample_rate=sample_rate,
        keyframe_interval=keyframe_interval,
    )
    return path
