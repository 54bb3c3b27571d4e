"""``ModalityIndex``: the one interface every vector engine implements for the store (one
index per modality, vectors keyed by their int64 SQLite row ids, inner product on unit
vectors == cosine similarity). ``faiss_index`` implements it in process, ``milvus_index``
on a Milvus collection (Milvus Lite embedded, or a server)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from services.index.index_settings import IndexSpec
from services.index.records import FloatArray, IdArray

EMPTY_IDS: IdArray = np.zeros(0, dtype=np.int64)


class ModalityIndex(ABC):
    """Vectors keyed by int64 ids: add, remove, top-k inner-product search."""

    def __init__(self, spec: IndexSpec) -> None:
        self.spec = spec

    @property
    @abstractmethod
    def mode(self) -> str:
        """What answers searches now: "flat", "hnsw", "ivf" or "ivf-untrained (exact)"."""

    @property
    @abstractmethod
    def live_count(self) -> int:
        """Vectors that searches can return."""

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        """Add unit ``vectors`` (n, dim) under new, unique ``ids`` (n,)."""
        check_ids(ids, vectors, self.spec.dim)
        if len(ids):
            self._add(ids, vectors)

    @abstractmethod
    def _add(self, ids: IdArray, vectors: FloatArray) -> None: ...

    @abstractmethod
    def remove(self, ids: IdArray) -> None:
        """Remove ``ids``; each must currently be in the index."""

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """(scores, ids), each (n_queries, k'), best first; k' <= k, missing slots have id -1."""
        return self._search(queries, k)

    @abstractmethod
    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]: ...

    @abstractmethod
    def ids(self) -> IdArray:
        """Every live id, in no particular order."""

    def needs_compaction(self) -> bool:
        """Whether enough deleted vectors linger (HNSW) to be worth ``compacted()``."""
        return False

    def compacted(self) -> ModalityIndex:
        """A copy without the vectors kept only as deleted ids (HNSW), or ``self``. Reads
        ``self`` only, so searches may go on while it builds."""
        return self

    def stats(self) -> dict[str, Any]:
        return {"mode": self.mode, "vectors": self.live_count}


def check_ids(ids: IdArray, vectors: FloatArray, dim: int) -> None:
    if vectors.ndim != 2 or vectors.shape[1] != dim or ids.shape != (vectors.shape[0],):
        raise ValueError(
            f"expected ids (n,) and vectors (n, {dim}); got {ids.shape}, {vectors.shape}"
        )


def empty_result(n_queries: int) -> tuple[FloatArray, IdArray]:
    return np.zeros((n_queries, 0), dtype=np.float32), np.zeros((n_queries, 0), dtype=np.int64)
