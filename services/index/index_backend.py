"""Where the store's vector indexes live: ``IndexBackend`` and its FAISS implementation.

SQLite stays the source of truth for items and window vectors with either backend; a
backend derives one ``ModalityIndex`` per modality from it on open (``restore``), rebuilds
one from it when asked or after a failed update (``build``), and, if it ``keeps_snapshots``
(FAISS: the index lives in process memory), writes the index to disk now and then.
``MilvusBackend`` (``milvus_index``) keeps the vectors in Milvus, which persists them itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from services.index.faiss_index import FaissIndex
from services.index.index_persistence import (
    Restored,
    SnapshotIdentity,
    build_from_db,
    restore_index,
    save_snapshot,
)
from services.index.index_settings import IndexSpec
from services.index.item_database import ItemDatabase
from services.index.records import Modality
from services.index.vector_index import ModalityIndex

IndexBackendName = Literal["faiss", "milvus"]
INDEX_BACKENDS: tuple[IndexBackendName, ...] = ("faiss", "milvus")


class IndexBackend(ABC):
    """Opens, rebuilds and (maybe) snapshots a store's per-modality indexes."""

    name: IndexBackendName
    keeps_snapshots: bool

    @abstractmethod
    def restore(self, db: ItemDatabase, identity: SnapshotIdentity, snapshot: Path) -> Restored:
        """The modality's index, in line with every row of ``db`` of its model version."""

    @abstractmethod
    def build(
        self, db: ItemDatabase, spec: IndexSpec, model_version: str, modality: Modality
    ) -> ModalityIndex:
        """The modality's index made anew from ``db``."""

    def snapshot_payload(self, index: ModalityIndex) -> Any:
        """What ``save_snapshot`` writes (taken under the store's write lock)."""
        return None

    def save_snapshot(
        self, path: Path, identity: SnapshotIdentity, max_row_id: int, payload: Any
    ) -> None:
        """Write ``payload`` durably (outside the write lock)."""
        return None

    def close(self) -> None:
        """Release connections (the store is closing)."""
        return None


class FaissBackend(IndexBackend):
    """In-process FAISS indexes, snapshotted atomically to the data directory (the default)."""

    name: IndexBackendName = "faiss"
    keeps_snapshots = True

    def restore(self, db: ItemDatabase, identity: SnapshotIdentity, snapshot: Path) -> Restored:
        return restore_index(db, identity, snapshot)

    def build(
        self, db: ItemDatabase, spec: IndexSpec, model_version: str, modality: Modality
    ) -> ModalityIndex:
        return build_from_db(db, spec, model_version, modality)

    def snapshot_payload(self, index: ModalityIndex) -> Any:
        assert isinstance(index, FaissIndex)
        return index.to_bytes()

    def save_snapshot(
        self, path: Path, identity: SnapshotIdentity, max_row_id: int, payload: Any
    ) -> None:
        save_snapshot(path, identity, max_row_id, payload)
