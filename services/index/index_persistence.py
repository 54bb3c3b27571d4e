"""Bring a modality's FAISS index back after a restart: from its snapshot plus the SQLite rows
written after it, or, when no usable snapshot exists, rebuilt from SQLite alone.

A snapshot is usable when it is intact (checksum), comes from this database (store id), was
made for this model version and modality with the same build settings, and claims no row
newer than the database holds (a database restored from an older backup). Replay then adds
the rows with ``row_id > max_row_id`` and removes the snapshot's ids that are no longer in
SQLite (deleted, or replaced by ``replace_item``, after the snapshot was taken).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.index.faiss_index import FaissIndex, index_from_bytes, new_index
from services.index.index_settings import IndexSpec
from services.index.item_database import ItemDatabase
from services.index.records import IdArray, Modality
from services.index.snapshot_file import SnapshotCorrupt, read_snapshot, write_snapshot
from services.index.vector_index import ModalityIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotIdentity:
    """What a snapshot must match to be reused."""

    store_id: str
    model_version: str
    modality: Modality
    spec: IndexSpec

    def header(self, max_row_id: int) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "model_version": self.model_version,
            "modality": self.modality,
            "build": self.spec.build_fingerprint(),
            "max_row_id": max_row_id,
            "created_at": time.time(),
        }

    def mismatch(self, header: dict[str, Any]) -> str | None:
        """Why a snapshot with ``header`` cannot be reused, or ``None`` if it can."""
        wanted = self.header(0)
        for key in ("store_id", "model_version", "modality", "build"):
            if header.get(key) != wanted[key]:
                return f"{key} differs ({header.get(key)!r} != {wanted[key]!r})"
        return None


@dataclass(frozen=True)
class Restored:
    index: ModalityIndex
    how: str  # "snapshot" or "rebuilt" (FAISS); "reconciled" (Milvus)
    detail: str
    replayed: int  # vectors added or removed on top of the snapshot
    snapshot_time: float | None


def build_from_db(
    db: ItemDatabase, spec: IndexSpec, model_version: str, modality: Modality
) -> FaissIndex:
    """A new index holding every ``modality`` vector of ``model_version`` in SQLite."""
    index = new_index(spec)
    for ids, vectors in db.vectors_after(modality, model_version, 0):
        index.add(ids, vectors)
    return index


def save_snapshot(
    path: Path,
    identity: SnapshotIdentity,
    max_row_id: int,
    payload: tuple[npt.NDArray[np.uint8], IdArray],
) -> None:
    index_bytes, deleted = payload
    write_snapshot(path, identity.header(max_row_id), index_bytes, deleted)


def restore_index(db: ItemDatabase, identity: SnapshotIdentity, path: Path) -> Restored:
    """Load ``path`` and replay newer SQLite rows, or rebuild from SQLite (see module doc)."""
    spec, version, modality = identity.spec, identity.model_version, identity.modality
    reason = _unusable_reason(db, identity, path)
    if isinstance(reason, str):
        index = build_from_db(db, spec, version, modality)
        log.info("%s index rebuilt from SQLite (%s)", modality, reason)
        return Restored(index, "rebuilt", reason, index.live_count, None)
    index, header = reason
    max_row_id = int(header["max_row_id"])
    in_index = index.ids()
    in_db = db.row_ids_up_to(modality, version, max_row_id)
    gone = np.setdiff1d(in_index, in_db)
    index.remove(gone)
    # Rows the snapshot should hold but does not (only if an index update once failed after
    # its SQLite commit): add them back rather than trust the snapshot blindly.
    missing_ids, missing_vectors = db.vectors_by_ids(np.setdiff1d(in_db, in_index))
    index.add(missing_ids, missing_vectors)
    added = len(missing_ids)
    for ids, vectors in db.vectors_after(modality, version, max_row_id):
        index.add(ids, vectors)
        added += len(ids)
    if index.needs_compaction():
        index = index.compacted()
    detail = f"replayed {added} added and {len(gone)} removed vectors after row {max_row_id}"
    log.info("%s index loaded from snapshot, %s", modality, detail)
    replayed = added + len(gone)
    return Restored(index, "snapshot", detail, replayed, float(header.get("created_at", 0.0)))


def _unusable_reason(
    db: ItemDatabase, identity: SnapshotIdentity, path: Path
) -> str | tuple[FaissIndex, dict[str, Any]]:
    try:
        data = read_snapshot(path)
    except (SnapshotCorrupt, OSError) as exc:
        return f"snapshot unreadable: {exc}"
    if data is None:
        return "no snapshot"
    why = identity.mismatch(data.header)
    if why is not None:
        return f"snapshot does not match: {why}"
    if int(data.header.get("max_row_id", -1)) > db.max_row_id():
        return "snapshot is newer than the database"
    try:
        index = index_from_bytes(identity.spec, data.index_bytes, data.deleted_ids)
    except (RuntimeError, ValueError) as exc:  # faiss raises RuntimeError on bad bytes
        return f"snapshot index unreadable: {exc}"
    return index, data.header
