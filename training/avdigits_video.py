"""AV-Digits picture: two handwritten digits on a textured background, one pulsing with the word.

Digits are scikit-learn's 8x8 handwriting samples, drawn with bicubic interpolation straight from
the 8x8 grid at every frame's position and size (one separable matrix product per frame, so any
size stays smooth). The target digit's brightness and size follow a drive signal (the speech
envelope); the distractor's drive is zero (it never pulses). Background, colours, positions and
the slow drift are drawn from the clip's RNG, independently of the label.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DIGIT_SIZE_RANGE = (0.38, 0.42)  # resting digit height as a fraction of the frame
SCALE_DIM, SCALE_GAIN = 0.9, 0.2  # size = base * (SCALE_DIM + SCALE_GAIN * drive)
BRIGHTNESS_DIM_RANGE = (0.1, 0.25)  # opacity when the drive is 0; 1.0 at full drive
RELEASE_S = 0.25  # a pulse decays with this time constant after the sound it follows
MIN_CONTRAST = 0.5  # luminance gap between a digit's colour and the mean background
_PAD = 1  # zero border around the 8x8 grid so the glyph fades out smoothly


def _digits_table() -> np.ndarray:
    """scikit-learn's digits as (1797, 65) rows of 64 pixels (0..16) and the label.

    Reads the CSV that ships inside scikit-learn, exactly as ``load_digits`` does, without
    importing scikit-learn (seconds on a small machine); falls back to ``load_digits``.
    """
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as rows:
                return np.loadtxt(rows, delimiter=",")
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.column_stack([digits.data, digits.target])


@lru_cache(maxsize=1)
def handwriting_images() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 10, 10) float32 in [0, 1] with a zero border, labels (1797,) int64)."""
    table = _digits_table()
    images = table[:, :64].reshape(-1, 8, 8).astype(np.float32) / 16.0
    images = np.pad(images, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)))
    images.setflags(write=False)
    labels = table[:, 64].astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def cubic_kernel(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (the usual bicubic), evaluated elementwise."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def sampling_matrices(start: np.ndarray, extent: np.ndarray, n_out: int) -> np.ndarray:
    """(T, n_out, 10) bicubic weights mapping a padded 10-pixel axis onto n_out output pixels.

    Frame t shows the 8 glyph pixels over [start[t], start[t] + extent[t]) output pixels.
    """
    pixel = (extent / 8.0)[:, None]
    source = (np.arange(n_out)[None, :] + 0.5 - start[:, None]) / pixel - 0.5 + _PAD
    taps = np.arange(8 + 2 * _PAD)
    return cubic_kernel(source[:, :, None] - taps[None, None, :]).astype(np.float32)


def glyph_alpha(
    image: np.ndarray, centre: np.ndarray, height: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """(T, *shape) coverage of a padded 10x10 glyph centred at centre[t] = (y, x) pixels."""
    rows = sampling_matrices(centre[:, 0] - height / 2, height, shape[0])
    cols = sampling_matrices(centre[:, 1] - height / 2, height, shape[1])
    alpha = np.matmul(np.matmul(rows, image), cols.transpose(0, 2, 1))
    return np.clip(alpha * 1.25, 0.0, 1.0)


def luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))


def make_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1]: a two-colour linear gradient plus a smooth texture."""
    colours = rng.uniform(0.0, 1.0, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    background = colours[0] * (1 - ramp[..., None]) + colours[1] * ramp[..., None]
    cells = int(rng.integers(3, 9))
    grid = rng.standard_normal((3, cells + 2 * _PAD, cells + 2 * _PAD)).astype(np.float32)
    weights = _resize_weights(cells, size)
    texture = np.matmul(np.matmul(weights, grid), weights.T).transpose(1, 2, 0)
    background += rng.uniform(0.0, 0.1) * texture
    background += rng.uniform(0.0, 0.03) * rng.standard_normal((size, size, 3)).astype(np.float32)
    return np.clip(background, 0.0, 1.0).astype(np.float32)


def _resize_weights(cells: int, size: int) -> np.ndarray:
    """(size, cells + 2) bicubic weights stretching a padded grid of `cells` over `size` pixels."""
    source = (np.arange(size) + 0.5) * cells / size - 0.5 + _PAD
    taps = np.arange(cells + 2 * _PAD)
    return cubic_kernel(source[:, None] - taps[None, :]).astype(np.float32)


def contrasting_colour(background_luma: float, rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour whose luminance differs from `background_luma` by >= MIN_CONTRAST."""
    colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    gap = luminance(colour) - background_luma
    if abs(gap) >= MIN_CONTRAST:
        return colour
    towards = 1.0 if background_luma < 0.5 else 0.0  # white on dark, black on bright
    target = background_luma + (MIN_CONTRAST if towards else -MIN_CONTRAST)
    mix = (target - luminance(colour)) / (towards - luminance(colour))
    return (colour + (towards - colour) * np.clip(mix, 0.0, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class DigitTrack:
    """One digit's appearance over time: per-frame opacity and height, plus where and in what."""

    image: np.ndarray  # (10, 10) padded glyph in [0, 1]
    colour: np.ndarray  # (3,) RGB in [0, 1]
    centre: np.ndarray  # (T, 2) (y, x) in pixels
    height: np.ndarray  # (T,) glyph height in pixels
    opacity: np.ndarray  # (T,) in [0, 1]


def layout_pair(
    size: int, n_frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """Centres (T, 2) of two non-overlapping, slowly drifting digits, and their base height."""
    base = float(rng.uniform(*DIGIT_SIZE_RANGE)) * size
    largest = base * (SCALE_DIM + SCALE_GAIN)
    wobble = 0.015 * size
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])
    half_gap = 0.5 * (largest * 1.1 + 2 * wobble) / float(np.abs(direction).max())
    offset = half_gap * direction
    slack = np.maximum(0.5 * size - np.abs(offset) - 0.5 * largest - wobble, 0.0)
    middle = 0.5 * size + rng.uniform(-slack, slack)
    t = np.arange(n_frames)[:, None]
    centres = []
    for sign in (1.0, -1.0):
        period = rng.uniform(20.0, 60.0, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        drift = wobble * np.sin(2 * np.pi * t / period + phase)
        centres.append(middle + sign * offset + drift)
    return centres[0], centres[1], base


def pulse_drive(envelope: np.ndarray, fps: float) -> np.ndarray:
    """The drive of a digit that lights up with `envelope` (T,) and fades out over RELEASE_S.

    Rises at once with the loudness and decays exponentially after it, like a VU meter, so a
    short word lights the digit for a few more frames than it lasts.
    """
    decay = float(np.exp(-1.0 / (RELEASE_S * fps)))
    drive = np.empty_like(envelope, dtype=np.float32)
    level = 0.0
    for t, value in enumerate(envelope):
        level = max(float(value), level * decay)
        drive[t] = level
    return drive


def digit_track(
    image: np.ndarray,
    colour: np.ndarray,
    centre: np.ndarray,
    base_height: float,
    drive: np.ndarray,
    rng: np.random.Generator,
) -> DigitTrack:
    """A digit whose opacity and height rise with `drive` (T,) in [0, 1]."""
    dim = float(rng.uniform(*BRIGHTNESS_DIM_RANGE))
    return DigitTrack(
        image=image,
        colour=colour,
        centre=centre,
        height=(base_height * (SCALE_DIM + SCALE_GAIN * drive)).astype(np.float32),
        opacity=(dim + (1.0 - dim) * drive).astype(np.float32),
    )


def _glyph_box(track: DigitTrack, size: int) -> tuple[slice, slice]:
    """Rows and columns that any frame of the glyph (with the cubic's 2-pixel support) touches."""
    reach = track.height / 2 * (1 + 2 * _PAD / 8) + 2
    low = np.floor(track.centre - reach[:, None]).min(axis=0).clip(0, size).astype(int)
    high = np.ceil(track.centre + reach[:, None]).max(axis=0).clip(0, size).astype(int)
    return slice(low[0], high[0]), slice(low[1], high[1])


def render_frames(background: np.ndarray, tracks: list[DigitTrack]) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: the background with each track composited in order."""
    size = background.shape[0]
    n_frames = tracks[0].opacity.shape[0]
    still = (background * 255.0 + 0.5).astype(np.uint8)
    frames = np.broadcast_to(still, (n_frames, *still.shape)).copy()
    for track in tracks:  # only the box each glyph can reach is touched
        rows, cols = _glyph_box(track, size)
        start = np.array([rows.start, cols.start], dtype=np.float32)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        alpha = glyph_alpha(track.image, track.centre - start, track.height, shape)
        alpha *= track.opacity[:, None, None]
        window = frames[:, rows, cols].astype(np.float32)
        window += alpha[..., None] * (track.colour * 255.0 - window)
        window += 0.5
        frames[:, rows, cols] = window.astype(np.uint8)
    return frames
