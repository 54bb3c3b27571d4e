"""Settings of the FAISS indexes and of the snapshot policy (frozen dataclasses).

The defaults were tuned with ``bench/search.py`` on a shared 2-core CPU at 1M clustered 128-d
vectors (target: p99 single-query latency under 5 ms with recall@10 >= 0.95):

- HNSW M=32, efConstruction=80, efSearch=96: recall@10 0.994, p99 1.2 ms (efSearch 64:
  0.980 / 0.8 ms; 128: 0.998 / 1.9 ms). Building 1M takes ~14 min on 2 busy cores.
- IVF nlist=1024 trained at 50k vectors, nprobe=16: recall@10 0.980, p99 1.4 ms (nprobe 8:
  0.973 / 0.9 ms; 24: 0.985 / 2.1 ms). Build (train + add) ~8 s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

IndexType = Literal["flat", "hnsw", "ivf"]
INDEX_TYPES: tuple[IndexType, ...] = ("flat", "hnsw", "ivf")


@dataclass(frozen=True)
class HNSWParams:
    """IndexHNSWFlat (inner product). ``m`` and ``ef_construction`` shape the graph (build
    time); ``ef_search`` is the search beam (search time, can change without a rebuild)."""

    m: int = 32
    ef_construction: int = 80
    ef_search: int = 96
    # HNSW cannot remove vectors: deleted ids are filtered at search time, and the graph is
    # rebuilt from the live vectors once this fraction of it is deleted.
    rebuild_deleted_fraction: float = 0.2


@dataclass(frozen=True)
class IVFParams:
    """IndexIVFFlat (inner product) with a flat coarse quantizer.

    The coarse centroids are trained once, on the first ``train_size`` vectors (at least
    ``39 * nlist``); until then searches are exact. ``nprobe`` is search time.
    """

    nlist: int = 1024
    nprobe: int = 16
    train_size: int = 50_000
    kmeans_iterations: int = 10

    @property
    def min_train_vectors(self) -> int:
        return max(self.train_size, 39 * self.nlist)


@dataclass(frozen=True)
class IndexSpec:
    """Everything that decides how one modality's FAISS index is built and searched."""

    index_type: IndexType = "flat"
    dim: int = 128
    hnsw: HNSWParams = field(default_factory=HNSWParams)
    ivf: IVFParams = field(default_factory=IVFParams)
    # OpenMP threads per search call. One: a single query gains little from more, and on a
    # busy 2-core host (API + model worker) OpenMP's spinning threads made a 20k-vector
    # exact search ~100x slower (40 ms vs 0.3 ms); concurrent requests give the parallelism.
    # Builds (HNSW adds, IVF training) keep FAISS's default thread count.
    search_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {self.index_type!r}")
        if self.dim <= 0:
            raise ValueError(f"dim must be positive, got {self.dim}")

    def build_fingerprint(self) -> dict[str, Any]:
        """The build-time settings a snapshot must match to be reused (search-time settings
        such as ef_search and nprobe are applied after loading, so they are left out)."""
        out: dict[str, Any] = {"index_type": self.index_type, "dim": self.dim}
        if self.index_type == "hnsw":
            out["hnsw"] = {"m": self.hnsw.m, "ef_construction": self.hnsw.ef_construction}
        if self.index_type == "ivf":
            ivf = asdict(self.ivf)
            ivf.pop("nprobe")
            out["ivf"] = ivf
        return out


@dataclass(frozen=True)
class SnapshotPolicy:
    """Snapshot the FAISS indexes after ``every_changes`` item changes (adds, deletes,
    replacements) or, on the next change, once ``every_seconds`` have passed since the last
    snapshot; and always on ``close()``. ``None`` turns a trigger off."""

    every_changes: int | None = 10_000
    every_seconds: float | None = 300.0
