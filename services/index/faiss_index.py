"""One modality's FAISS index over window vectors, keyed by SQLite row id (int64).

Three kinds, one interface (inner product on unit vectors == cosine similarity):

- ``FlatIndex``: exact, ``IndexIDMap2(IndexFlatIP)``; ``remove_ids`` really removes.
- ``HNSWIndex``: ``IndexIDMap2(IndexHNSWFlat(METRIC_INNER_PRODUCT))``. HNSW cannot remove, so
  deleted ids are kept in a set and excluded during the graph search (an ``IDSelectorNot``),
  and ``compacted()`` rebuilds the graph from the live vectors once enough are deleted.
- ``IVFIndex``: exact (a ``FlatIndex``) until ``ivf.min_train_vectors`` vectors exist, then
  ``IndexIVFFlat`` with a flat inner-product quantizer trained once on them; ``remove_ids``
  really removes (hash-table direct map).

Not thread-safe for mutation: the store serialises writers and keeps readers out while one
runs. Search-time settings (efSearch, nprobe) go in per-call ``SearchParameters`` so
concurrent searches never touch shared state.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faiss as _faiss_module
import numpy as np
import numpy.typing as npt

from services.index.index_settings import IndexSpec
from services.index.records import FloatArray, IdArray
from services.index.vector_index import EMPTY_IDS, ModalityIndex, check_ids, empty_result

# faiss-cpu ships partial stubs (no SearchParametersHNSW or DirectMap, remove_ids typed as
# IDSelector-only although the wrapper takes an id array): use the module untyped.
faiss: Any = _faiss_module


class FaissIndex(ModalityIndex):
    """A ``ModalityIndex`` in FAISS: adds and searches on a chosen number of OpenMP threads,
    and (de)serialisable for snapshots."""

    def add(self, ids: IdArray, vectors: FloatArray) -> None:
        """Small batches (one item's windows) run on one OpenMP thread: on a busy 2-core host,
        OpenMP's thread team made a 400-vector HNSW add ~10x slower than one thread did."""
        check_ids(ids, vectors, self.spec.dim)
        if len(ids):
            with omp_threads(threads_for(len(ids))):
                self._add(ids, vectors)

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """Runs on ``spec.search_threads`` OpenMP threads (this calling thread only)."""
        with omp_threads(self.spec.search_threads):
            return self._search(queries, k)

    @abstractmethod
    def to_bytes(self) -> tuple[npt.NDArray[np.uint8], IdArray]:
        """(the serialised FAISS index, the deleted-but-still-stored ids)."""

    def compacted(self) -> FaissIndex:
        return self


# FAISS's default OpenMP thread count, read once at import (before anything changes it).
BUILD_THREADS: int = faiss.omp_get_max_threads()
PARALLEL_ADD_MIN = 5_000


def threads_for(n_vectors: int) -> int:
    """OpenMP threads for building with ``n_vectors``: one for small batches (an item's
    windows), FAISS's default for bulk work (rebuilds, IVF training on many vectors)."""
    return 1 if n_vectors < PARALLEL_ADD_MIN else BUILD_THREADS


@contextmanager
def omp_threads(n: int | None) -> Iterator[None]:
    """Run FAISS on ``n`` OpenMP threads in the calling thread (OpenMP's thread count is a
    per-thread setting, so other threads are unaffected); ``None`` keeps the current one."""
    if not n:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FlatIndex(FaissIndex):
    """Exact inner-product search over every vector."""

    def __init__(self, spec: IndexSpec, index: Any | None = None) -> None:
        super().__init__(spec)
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(spec.dim))

    @property
    def mode(self) -> str:
        return "flat"

    @property
    def live_count(self) -> int:
        return int(self.index.ntotal)

    def _add(self, ids: IdArray, vectors: FloatArray) -> None:
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: IdArray) -> None:
        if len(ids):
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        k = min(k, self.live_count)
        if k <= 0:
            return empty_result(queries.shape[0])
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def ids(self) -> IdArray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def vectors(self) -> FloatArray:
        """Every stored vector, in the order of ``ids()``."""
        n = self.live_count
        if n == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        return np.asarray(self.index.index.reconstruct_n(0, n), dtype=np.float32)

    def to_bytes(self) -> tuple[npt.NDArray[np.uint8], IdArray]:
        return faiss.serialize_index(self.index), EMPTY_IDS


class HNSWIndex(FaissIndex):
    """Approximate search on an HNSW graph; deletes are tombstones until ``compacted()``."""

    def __init__(
        self, spec: IndexSpec, index: Any | None = None, deleted: IdArray = EMPTY_IDS
    ) -> None:
        super().__init__(spec)
        self.index = index if index is not None else self._new_faiss_index()
        self._deleted: set[int] = {int(i) for i in deleted}
        self._selector: Any | None = None
        self._refresh_selector()

    def _new_faiss_index(self) -> Any:
        hnsw = faiss.IndexHNSWFlat(self.spec.dim, self.spec.hnsw.m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = self.spec.hnsw.ef_construction
        hnsw.hnsw.efSearch = self.spec.hnsw.ef_search
        return faiss.IndexIDMap2(hnsw)

    def _refresh_selector(self) -> None:
        if not self._deleted:
            self._selector = None
            return
        batch = faiss.IDSelectorBatch(np.fromiter(self._deleted, dtype=np.int64))
        selector = faiss.IDSelectorNot(batch)
        selector.referenced_batch = batch  # keep the wrapped selector alive with its owner
        self._selector = selector

    @property
    def mode(self) -> str:
        return "hnsw"

    @property
    def live_count(self) -> int:
        return int(self.index.ntotal) - len(self._deleted)

    @property
    def deleted_count(self) -> int:
        return len(self._deleted)

    def _add(self, ids: IdArray, vectors: FloatArray) -> None:
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: IdArray) -> None:
        if len(ids):
            self._deleted.update(int(i) for i in ids)
            self._refresh_selector()

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        k = min(k, self.live_count)
        if k <= 0:
            return empty_result(queries.shape[0])
        params = faiss.SearchParametersHNSW(efSearch=max(self.spec.hnsw.ef_search, k))
        if self._selector is not None:
            params.sel = self._selector
        scores, ids = self.index.search(queries, k, params=params)
        return scores, ids

    def ids(self) -> IdArray:
        all_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if not self._deleted:
            return all_ids
        return all_ids[~np.isin(all_ids, np.fromiter(self._deleted, dtype=np.int64))]

    def needs_compaction(self) -> bool:
        total = int(self.index.ntotal)
        fraction = self.spec.hnsw.rebuild_deleted_fraction
        return total > 0 and len(self._deleted) > fraction * total

    def compacted(self) -> FaissIndex:
        if not self._deleted:
            return self
        all_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        keep = ~np.isin(all_ids, np.fromiter(self._deleted, dtype=np.int64))
        fresh = HNSWIndex(self.spec)
        if keep.any():
            vectors = self.index.index.reconstruct_n(0, int(self.index.ntotal))[keep]
            fresh.add(all_ids[keep], np.ascontiguousarray(vectors, dtype=np.float32))
        return fresh

    def to_bytes(self) -> tuple[npt.NDArray[np.uint8], IdArray]:
        deleted = np.fromiter(sorted(self._deleted), dtype=np.int64, count=len(self._deleted))
        return faiss.serialize_index(self.index), deleted

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "deleted_pending": len(self._deleted)}


class IVFIndex(FaissIndex):
    """Exact until enough vectors exist to train the coarse quantizer, then IVF-Flat."""

    def __init__(self, spec: IndexSpec, index: Any | None = None) -> None:
        super().__init__(spec)
        self._exact: FlatIndex | None = None
        self.ivf: Any | None = None
        if index is not None and isinstance(index, faiss.IndexIVFFlat):
            self.ivf = index
        else:
            self._exact = FlatIndex(spec, index)

    @property
    def trained(self) -> bool:
        return self.ivf is not None

    @property
    def mode(self) -> str:
        return "ivf" if self.trained else "ivf-untrained (exact)"

    @property
    def live_count(self) -> int:
        if self.ivf is not None:
            return int(self.ivf.ntotal)
        assert self._exact is not None
        return self._exact.live_count

    def _add(self, ids: IdArray, vectors: FloatArray) -> None:
        if self.ivf is not None:
            self.ivf.add_with_ids(vectors, ids)
            return
        assert self._exact is not None
        self._exact._add(ids, vectors)
        if self._exact.live_count >= self.spec.ivf.min_train_vectors:
            with omp_threads(threads_for(self._exact.live_count)):
                self._train_from_exact()

    def _train_from_exact(self) -> None:
        assert self._exact is not None
        params = self.spec.ivf
        quantizer = faiss.IndexFlatIP(self.spec.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.spec.dim, params.nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = params.kmeans_iterations
        ivf.cp.seed = 1234
        vectors = self._exact.vectors()
        ivf.train(vectors)
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.add_with_ids(vectors, self._exact.ids())
        self.ivf = ivf
        self._exact = None

    def remove(self, ids: IdArray) -> None:
        if not len(ids):
            return
        if self.ivf is not None:
            self.ivf.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))
        else:
            assert self._exact is not None
            self._exact.remove(ids)

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        if self.ivf is None:
            assert self._exact is not None
            return self._exact._search(queries, k)
        k = min(k, self.live_count)
        if k <= 0:
            return empty_result(queries.shape[0])
        params = faiss.SearchParametersIVF(nprobe=self.spec.ivf.nprobe)
        scores, ids = self.ivf.search(queries, k, params=params)
        return scores, ids

    def ids(self) -> IdArray:
        if self.ivf is None:
            assert self._exact is not None
            return self._exact.ids()
        lists = self.ivf.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(lists.nlist)
            if lists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else EMPTY_IDS.copy()

    def to_bytes(self) -> tuple[npt.NDArray[np.uint8], IdArray]:
        if self.ivf is None:
            assert self._exact is not None
            return self._exact.to_bytes()
        return faiss.serialize_index(self.ivf), EMPTY_IDS


def new_index(spec: IndexSpec) -> FaissIndex:
    """An empty index of ``spec.index_type``."""
    if spec.index_type == "hnsw":
        return HNSWIndex(spec)
    if spec.index_type == "ivf":
        return IVFIndex(spec)
    return FlatIndex(spec)


def index_from_bytes(spec: IndexSpec, data: npt.NDArray[np.uint8], deleted: IdArray) -> FaissIndex:
    """Rebuild an index from ``ModalityIndex.to_bytes()`` output; raises ``ValueError`` if the
    bytes do not hold the kind of index ``spec`` asks for."""
    index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
    if index.d != spec.dim:
        raise ValueError(f"snapshot index has dim {index.d}, expected {spec.dim}")
    if spec.index_type == "ivf":
        if not isinstance(index, faiss.IndexIVFFlat | faiss.IndexIDMap2):
            raise ValueError(f"snapshot holds {type(index).__name__}, expected an IVF index")
        return IVFIndex(spec, index)
    if not isinstance(index, faiss.IndexIDMap2):
        raise ValueError(f"snapshot holds {type(index).__name__}, expected IndexIDMap2")
    inner = faiss.downcast_index(index.index)
    if spec.index_type == "hnsw":
        if not isinstance(inner, faiss.IndexHNSWFlat):
            raise ValueError(f"snapshot holds {type(inner).__name__}, expected IndexHNSWFlat")
        return HNSWIndex(spec, index, deleted)
    if not isinstance(inner, faiss.IndexFlatIP):
        raise ValueError(f"snapshot holds {type(inner).__name__}, expected IndexFlatIP")
    return FlatIndex(spec, index)
