"""Validation of vectors and windows before they reach SQLite or FAISS."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from services.index.errors import BadItem, BadVector
from services.index.records import FloatArray, WindowVectors

# Vectors arrive L2-normalised from the model; anything this far from unit length is a bug
# upstream, not rounding. Within it the store renormalises so inner product == cosine.
_MIN_NORM = 1e-6


def unit_rows(x: npt.ArrayLike, dim: int, what: str = "vectors") -> FloatArray:
    """``x`` as a C-contiguous (n, dim) float32 array of unit rows.

    Accepts (dim,) or (n, dim). Raises ``BadVector`` on a wrong shape, non-finite values or a
    (near-)zero row.
    """
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise BadVector(f"{what}: expected shape (n, {dim}) or ({dim},), got {arr.shape}")
    if arr.shape[0] == 0:
        raise BadVector(f"{what}: no rows")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise BadVector(f"{what}: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise BadVector(f"{what}: contains NaN or infinity")
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    if (norms < _MIN_NORM).any():
        raise BadVector(f"{what}: row {int(np.argmin(norms))} has zero norm")
    return np.ascontiguousarray(arr / norms[:, None].astype(np.float32), dtype=np.float32)


def checked_windows(windows: WindowVectors, dim: int, what: str) -> WindowVectors:
    """``windows`` with unit float32 vectors; raises on inconsistent shapes or times."""
    vectors = unit_rows(windows.vectors, dim, what)
    starts = np.asarray(windows.starts, dtype=np.float64).reshape(-1)
    ends = np.asarray(windows.ends, dtype=np.float64).reshape(-1)
    n = vectors.shape[0]
    if starts.shape[0] != n or ends.shape[0] != n:
        raise BadItem(f"{what}: {n} vectors but {starts.shape[0]} starts and {ends.shape[0]} ends")
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()):
        raise BadItem(f"{what}: window times must be finite")
    if (ends < starts).any() or (starts < 0).any():
        raise BadItem(f"{what}: every window needs 0 <= start <= end")
    return WindowVectors(vectors=vectors, starts=starts, ends=ends)


def item_vector(vectors: FloatArray) -> FloatArray:
    """The item-level vector: the normalised mean of its (unit) window vectors, shape (dim,)."""
    mean = vectors.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < _MIN_NORM:
        # Windows that cancel out exactly: fall back to the first window rather than divide
        # by zero (practically unreachable with real embeddings).
        return np.asarray(vectors[0], dtype=np.float32)
    return np.asarray(mean / norm, dtype=np.float32)
