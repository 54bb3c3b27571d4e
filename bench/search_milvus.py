"""The Milvus rows of ``bench/search.py``: an index built and searched through the store's own
Milvus classes (``services.index.milvus_index``) on Milvus Lite, a file in a directory of
its own, as the service runs it with ``AVID_INDEX_BACKEND=milvus`` and a local
``AVID_MILVUS_URI``.

Build time covers what makes the index answer at full speed: the inserts (in the store's
5,000-row requests, handed over 50,000 vectors at a time as ``bench.search.build`` does),
a flush (Milvus Lite seals its in-memory table into segments and builds their vector
indexes) and the first search."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.index.index_persistence import SnapshotIdentity
from services.index.index_settings import IndexSpec
from services.index.item_database import open_item_database
from services.index.milvus_index import MilvusBackend, MilvusIndex

MODEL_VERSION = "bench"


def milvus_lite_version() -> str:
    return f"milvus-lite {version('milvus-lite')}, pymilvus {version('pymilvus')}"


@contextmanager
def built_milvus_index(
    spec: IndexSpec, base: npt.NDArray[np.float32], directory: Path
) -> Iterator[tuple[MilvusIndex, float]]:
    """(index, build seconds) of ``base`` (ids 0..n-1) in a Milvus Lite file under
    ``directory``; the connection is closed on exit (the caller removes the directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    db = open_item_database(directory, spec.dim, None)  # only its store id and settings
    backend = MilvusBackend(str(directory / "milvus.db"))
    try:
        identity = SnapshotIdentity(db.store_id, MODEL_VERSION, "video", spec)
        index, _, _ = backend.reconciled(db, identity)
        ids = np.arange(len(base), dtype=np.int64)
        t0 = time.perf_counter()
        for start in range(0, len(base), 50_000):
            index.add(ids[start : start + 50_000], base[start : start + 50_000])
        backend.client.flush(index.collection)
        index.search(base[:1], 10)
        yield index, time.perf_counter() - t0
    finally:
        backend.close()
        db.close()
