"""AV-Digits splits: disjoint voice and handwriting pools, and each clip's split and label.

Train, val and test share no voice and no handwriting sample: the voice list and each class's
handwriting samples are shuffled from the seed and cut 70/15/15. Clips are assigned to splits in
the same proportions with labels balanced within each split.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from training import avdigits_audio as audio
from training import avdigits_video as video

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
NUM_CLASSES = 10


@dataclass(frozen=True)
class SplitPools:
    """Disjoint voices and handwriting samples (per class) for each split."""

    speakers: dict[str, tuple[str, ...]]
    handwriting: dict[str, tuple[tuple[int, ...], ...]]  # split -> class -> sample indices


def _partition(items: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle `items` and cut them into len(SPLITS) parts of SPLIT_FRACTIONS (each non-empty)."""
    shuffled = rng.permutation(items)
    n = len(shuffled)
    n_val = max(1, round(n * SPLIT_FRACTIONS[1]))
    n_test = max(1, round(n * SPLIT_FRACTIONS[2]))
    n_train = n - n_val - n_test
    return [shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :]]


@lru_cache(maxsize=8)
def split_pools(seed: int) -> SplitPools:
    """The voice and handwriting pools of each split, a pure function of the seed."""
    speakers = np.array(audio.speaker_ids())
    speaker_parts = _partition(speakers, np.random.default_rng([seed, 1, 0]))
    _, labels = video.handwriting_images()
    per_class = [
        _partition(np.flatnonzero(labels == c), np.random.default_rng([seed, 1, 1, c]))
        for c in range(NUM_CLASSES)
    ]
    return SplitPools(
        speakers={s: tuple(str(v) for v in speaker_parts[i]) for i, s in enumerate(SPLITS)},
        handwriting={
            s: tuple(tuple(int(j) for j in per_class[c][i]) for c in range(NUM_CLASSES))
            for i, s in enumerate(SPLITS)
        },
    )


def plan_clips(clips: int, seed: int) -> list[tuple[str, int]]:
    """(split, label) per clip: split sizes follow SPLIT_FRACTIONS, labels balanced per split."""
    rng = np.random.default_rng([seed, 2])
    n_val = round(clips * SPLIT_FRACTIONS[1])
    n_test = round(clips * SPLIT_FRACTIONS[2])
    sizes = (clips - n_val - n_test, n_val, n_test)
    splits = rng.permutation(np.repeat(np.arange(len(SPLITS)), sizes))
    labels = np.empty(clips, dtype=np.int64)
    for i, n in enumerate(sizes):
        members = np.flatnonzero(splits == i)
        labels[members] = rng.permutation(np.arange(n) % NUM_CLASSES)
    return [(SPLITS[s], int(c)) for s, c in zip(splits, labels, strict=True)]
