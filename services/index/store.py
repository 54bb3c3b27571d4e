"""``IndexStore``: items and their window vectors, durable in SQLite, searchable through one
FAISS index per modality (video, audio) that is derived from SQLite.

Concurrency: the service has ONE writer process (``DataDirLock`` refuses a second store on
the same directory) and, inside it, every mutation goes through one ``threading.RLock``.
Searches run concurrently with each other and with the SQLite part of a write; they are only
held back (a writer-preferring readers-writer lock) while FAISS itself is being changed,
because searching a FAISS index that another thread is adding to is not safe.

Durability: a write commits to SQLite (WAL, ``synchronous=FULL``: the WAL is fsynced at
commit) before the FAISS index is touched, so once ``add_item`` returns the item survives
``kill -9`` or a power cut. The FAISS indexes are snapshotted atomically every
``SnapshotPolicy`` changes/seconds and on ``close()``; on open the snapshot is loaded and only
the newer SQLite rows (and deletes) are replayed, or the index is rebuilt from SQLite.

With ``database_url`` the items live in PostgreSQL instead (``item_database``): the same
contract, and writes that stay one at a time when several stores, each in its own process
and directory, share the database; each store's FAISS index holds its own writes and what
it found in the database on open (the replay above picks up the others' rows).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from services.index.data_dir_lock import DataDirLock
from services.index.errors import (
    DuplicateContent,
    IndexStoreError,
    ItemExists,
    ItemNotFound,
    WindowNotFound,
)
from services.index.index_backend import FaissBackend, IndexBackend
from services.index.index_persistence import Restored, SnapshotIdentity
from services.index.index_settings import (
    HNSWParams,
    IndexSpec,
    IndexType,
    IVFParams,
    SnapshotPolicy,
)
from services.index.item_checks import (
    check_model_version,
    checked_item,
    checked_modalities,
    metadata_text,
)
from services.index.item_database import SQLITE_FILE, open_item_database
from services.index.item_filter import ItemFilter
from services.index.item_search import search_items
from services.index.records import (
    MODALITIES,
    FloatArray,
    IdArray,
    ItemKind,
    ItemRecord,
    Modality,
    NewItem,
    SearchHit,
    WindowVectors,
)
from services.index.rw_lock import ReadWriteLock
from services.index.snapshot_file import remove_stale_temporaries
from services.index.vector_checks import item_vector, unit_rows
from services.index.vector_index import ModalityIndex

log = logging.getLogger(__name__)

_IndexChanges = dict[Modality, list[tuple[IdArray, FloatArray | None]]]


def _no_changes() -> _IndexChanges:
    return {m: [] for m in MODALITIES}


class IndexStore:
    """The service's vector + metadata store (see the module doc for the guarantees)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        model_version: str,
        index_type: IndexType = "flat",
        dim: int = 128,
        hnsw: HNSWParams | None = None,
        ivf: IVFParams | None = None,
        snapshots: SnapshotPolicy | None = None,
        backend: IndexBackend | None = None,
        database_url: str | None = None,
    ) -> None:
        """``backend``: where the vector indexes live (default: FAISS in process, snapshotted
        under ``data_dir``; ``MilvusBackend`` for Milvus). The store closes it.
        ``database_url``: a PostgreSQL database for the items and window vectors, which
        other stores (other processes, each on its own ``data_dir``) may share; default
        SQLite in ``data_dir``."""
        if not model_version:
            raise ValueError("model_version must be a non-empty string")
        self.data_dir = Path(data_dir)
        self.model_version = model_version
        self.spec = IndexSpec(index_type, dim, hnsw or HNSWParams(), ivf or IVFParams())
        self.snapshot_policy = snapshots or SnapshotPolicy()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._backend = backend or FaissBackend()
        try:
            self._dir_lock = DataDirLock(self.data_dir / "LOCK")
        except BaseException:
            self._backend.close()
            raise
        self._closed = True
        try:
            self._db = open_item_database(self.data_dir, dim, database_url)
            self._snapshot_dir = self.data_dir / "snapshots"
            self._snapshot_dir.mkdir(exist_ok=True)
            remove_stale_temporaries(self._snapshot_dir)
            self._write_lock = threading.RLock()
            self._index_lock = ReadWriteLock()
            self._snapshot_lock = threading.Lock()
            self.restored: dict[Modality, Restored] = {
                m: self._backend.restore(self._db, self._identity(m), self._snapshot_path(m))
                for m in MODALITIES
            }
            self._indexes: dict[Modality, ModalityIndex] = {
                m: r.index for m, r in self.restored.items()
            }
            times = [r.snapshot_time for r in self.restored.values() if r.snapshot_time]
            self._last_snapshot_at: float | None = min(times) if times else None
            self._last_snapshot_mono = time.monotonic()
            self._changes_since_snapshot = 0
            self._closed = False
            # Replayed vectors count as changes (more cautious than items: one item has
            # several windows); a rebuild is snapshotted at once as it may have been slow.
            self._changes_since_snapshot = sum(r.replayed for r in self.restored.values())
            if any(r.how == "rebuilt" and r.replayed for r in self.restored.values()):
                self.snapshot()
            else:
                self._maybe_snapshot()
        except BaseException:
            self._backend.close()
            self._dir_lock.release()
            raise

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, *, snapshot: bool = True) -> None:
        """Snapshot (if anything changed since the last one, unless ``snapshot=False``: the
        next open then replays from SQLite) and release the directory. Idempotent."""
        if self._closed:
            return
        try:
            if snapshot and self._changes_since_snapshot:
                self.snapshot()
        finally:
            with self._write_lock, self._index_lock.writing():
                self._closed = True
                self._db.close()
                self._backend.close()
            self._dir_lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise IndexStoreError("the index store is closed")

    def _identity(self, modality: Modality) -> SnapshotIdentity:
        return SnapshotIdentity(self._db.store_id, self.model_version, modality, self.spec)

    def _snapshot_path(self, modality: Modality) -> Path:
        return self._snapshot_dir / f"{modality}.faiss"

    # -- writes ---------------------------------------------------------------------------

    def add_item(self, item: NewItem) -> ItemRecord:
        """Store ``item`` durably and index its windows; returns the stored record.

        Idempotent: an item with the same (content_hash, model_version) — or the same
        explicit ``item_id`` with that content — is returned as it is, not duplicated.
        Raises ``ModelVersionMismatch``, ``ItemExists`` (the id holds other content),
        ``BadVector`` / ``BadItem``.
        """
        return self.add_items([item])[0]

    def add_items(self, items: Sequence[NewItem]) -> list[ItemRecord]:
        """``add_item`` for several items in one transaction (all or nothing)."""
        self._check_open()
        checked = [checked_item(item, self.spec.dim, self.model_version) for item in items]
        records: list[ItemRecord] = []
        added = _no_changes()
        with self._write_lock:
            self._check_open()
            with self._db.write_transaction() as tx:
                for c in checked:
                    existing = self._existing_item(tx, c.item)
                    if existing is not None:
                        records.append(existing)
                        continue
                    item_id = c.item.item_id or uuid.uuid4().hex
                    new_ids = self._db.insert_item(
                        tx,
                        item_id=item_id,
                        kind=c.item.kind,
                        model_version=c.item.model_version,
                        content_hash=c.item.content_hash,
                        duration=float(c.item.duration),
                        metadata_json=c.metadata_json,
                        windows=c.windows,
                        file_name=c.item.file_name,
                        size_bytes=c.item.size_bytes,
                    )
                    for modality, ids in new_ids.items():
                        added[modality].append((ids, c.windows[modality].vectors))
                    record = self._db.get(item_id, tx)
                    assert record is not None
                    records.append(record)
            n_new = sum(len(v) for v in added.values())
            if n_new:
                self._apply(added)
                self._changes_since_snapshot += len(items)
        self._maybe_snapshot()
        return records

    def _existing_item(self, tx: Any, item: NewItem) -> ItemRecord | None:
        if item.item_id is not None:
            same_id = self._db.get(item.item_id, tx)
            if same_id is not None:
                if (same_id.content_hash, same_id.model_version) == (
                    item.content_hash,
                    item.model_version,
                ):
                    return same_id
                raise ItemExists(
                    f"item {item.item_id!r} already exists with other content or another model "
                    f"version ({same_id.model_version!r})",
                    item_id=item.item_id,
                )
        same_content = self._db.find_by_content(item.content_hash, item.model_version, tx)
        if same_content is not None and item.item_id not in (None, same_content.item_id):
            raise DuplicateContent.of(same_content.item_id, item.item_id)
        return same_content

    def delete(self, item_id: str) -> bool:
        """Remove the item from SQLite and its vectors from the indexes; False if absent."""
        self._check_open()
        with self._write_lock:
            self._check_open()
            with self._db.write_transaction() as tx:
                rows = self._db.delete_item(tx, item_id)
            if rows is None:
                return False
            self._apply(self._removals(rows))
            self._changes_since_snapshot += 1
        self._maybe_snapshot()
        return True

    def update_metadata(
        self, item_id: str, update: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> ItemRecord:
        """Replace the item's metadata with ``update(current)``, atomically (the vectors
        stay); raises ``ItemNotFound``, ``BadItem`` (not a JSON object) or what ``update``
        raises."""
        self._check_open()
        with self._write_lock:
            self._check_open()
            with self._db.write_transaction() as tx:
                current = self._db.get(item_id, tx)
                if current is None:
                    raise ItemNotFound(item_id)
                self._db.set_metadata(tx, item_id, metadata_text(update(current.metadata)))
                record = self._db.get(item_id, tx)
        assert record is not None
        return record

    def replace_item(
        self,
        item_id: str,
        *,
        model_version: str,
        video: WindowVectors | None = None,
        audio: WindowVectors | None = None,
    ) -> ItemRecord:
        """Swap all of an item's vectors for new ones made by ``model_version`` (this store's
        version) in one transaction: for ``avid reindex`` re-embedding stale items."""
        self._check_open()
        check_model_version(model_version, self.model_version, "replacement")
        with self._write_lock:
            self._check_open()
            with self._db.write_transaction() as tx:
                existing = self._db.get(item_id, tx)
                if existing is None:
                    raise ItemNotFound(item_id)
                windows = checked_modalities(existing.kind, video, audio, self.spec.dim)
                clash = self._db.find_by_content(existing.content_hash, model_version, tx)
                if clash is not None and clash.item_id != item_id:
                    raise ItemExists(
                        f"item {clash.item_id!r} already holds this content under model "
                        f"{model_version!r}; delete one of the two"
                    )
                old_rows, new_ids = self._db.replace_windows(tx, item_id, model_version, windows)
                record = self._db.get(item_id, tx)
                assert record is not None
            changes = self._removals(old_rows)
            for modality, ids in new_ids.items():
                changes[modality].append((ids, windows[modality].vectors))
            self._apply(changes)
            self._changes_since_snapshot += 1
        self._maybe_snapshot()
        return record

    def rebuild(self, modality: Modality | None = None) -> None:
        """Rebuild indexes from SQLite (e.g. to retrain IVF on today's data). Searches go on
        against the old index meanwhile; writers wait."""
        self._check_open()
        with self._write_lock:
            for m in (modality,) if modality else MODALITIES:
                fresh = self._backend.build(self._db, self.spec, self.model_version, m)
                with self._index_lock.writing():
                    self._indexes[m] = fresh
            self._changes_since_snapshot += 1
        self._maybe_snapshot()

    def _removals(self, rows: list[tuple[int, Modality, str]]) -> _IndexChanges:
        changes = _no_changes()
        for modality in MODALITIES:
            ids = [r for r, m, v in rows if m == modality and v == self.model_version]
            if ids:
                changes[modality].append((np.array(ids, dtype=np.int64), None))
        return changes

    def _apply(self, changes: _IndexChanges) -> None:
        """Mirror committed SQLite changes into FAISS (caller holds the write lock)."""
        for modality, parts in changes.items():
            if not parts:
                continue
            removed = [ids for ids, vectors in parts if vectors is None]
            added = [(ids, vectors) for ids, vectors in parts if vectors is not None]
            index = self._indexes[modality]
            try:
                with self._index_lock.writing():
                    if removed:
                        index.remove(np.concatenate(removed))
                    if added:
                        index.add(
                            np.concatenate([ids for ids, _ in added]),
                            np.ascontiguousarray(np.vstack([v for _, v in added])),
                        )
            except Exception:
                # SQLite already holds the change; bring FAISS back in line with it.
                log.exception("%s index update failed; rebuilding it from SQLite", modality)
                index = self._backend.build(self._db, self.spec, self.model_version, modality)
                with self._index_lock.writing():
                    self._indexes[modality] = index
            if index.needs_compaction():
                fresh = index.compacted()  # searches continue on the old graph meanwhile
                with self._index_lock.writing():
                    self._indexes[modality] = fresh

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> None:
        """Write every FAISS index (with the newest SQLite row id it reflects) atomically."""
        self._check_open()
        with self._snapshot_lock:
            self._write_snapshots()

    def _maybe_snapshot(self) -> None:
        """Snapshot if the policy says it is due; skipped while another snapshot is running
        (that one covers these changes, or the next change triggers again)."""
        if not self._changes_since_snapshot or not self._snapshot_lock.acquire(blocking=False):
            return
        try:
            policy, changes = self.snapshot_policy, self._changes_since_snapshot
            by_count = policy.every_changes is not None and changes >= policy.every_changes
            by_time = (
                policy.every_seconds is not None
                and time.monotonic() - self._last_snapshot_mono >= policy.every_seconds
            )
            if changes and (by_count or by_time):
                self._write_snapshots()
        finally:
            self._snapshot_lock.release()

    def _write_snapshots(self) -> None:
        """(Caller holds the snapshot lock.) Serialise under the write lock, so the indexes
        and the row id agree, then write the files with writers free to go on."""
        with self._write_lock:
            max_row_id = self._db.max_row_id()
            payloads = {m: self._backend.snapshot_payload(self._indexes[m]) for m in MODALITIES}
            pending, self._changes_since_snapshot = self._changes_since_snapshot, 0
            taken_at, taken_mono = time.time(), time.monotonic()
        try:
            for m in MODALITIES:
                path, identity = self._snapshot_path(m), self._identity(m)
                self._backend.save_snapshot(path, identity, max_row_id, payloads[m])
        except BaseException:
            with self._write_lock:
                self._changes_since_snapshot += max(pending, 1)
            raise
        self._last_snapshot_at, self._last_snapshot_mono = taken_at, taken_mono

    # -- reads ----------------------------------------------------------------------------

    @property
    def database_path(self) -> Path:
        """The SQLite file of the items (the service keeps its job records there too); not
        used when the store was opened on a database URL."""
        return self.data_dir / SQLITE_FILE

    def holds_content(self, content_hash: str) -> bool:
        """Whether an item of any model version holds ``content_hash`` (its kept file is
        needed: by the item, or by ``avid reindex``)."""
        self._check_open()
        return self._db.holds_content(content_hash)

    def find_content(self, content_hash: str) -> ItemRecord | None:
        """The item of this store's model version holding ``content_hash``, if any."""
        self._check_open()
        return self._db.find_by_content(content_hash, self.model_version)

    def get(self, item_id: str) -> ItemRecord | None:
        self._check_open()
        return self._db.get(item_id)

    def list_items(
        self, offset: int = 0, limit: int = 50, kind: ItemKind | None = None
    ) -> tuple[list[ItemRecord], int]:
        """A page of items (every model version), oldest first, and the total count."""
        self._check_open()
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        return self._db.list_items(offset, limit, kind, None)

    def items_after(
        self, after_row: int = 0, limit: int = 50, kind: ItemKind | None = None
    ) -> tuple[list[ItemRecord], int, int | None]:
        """Keyset pagination: up to ``limit`` items after the row ``after_row`` (0: from the
        start), oldest first; the total count; the row to continue after, or None at the
        end. Unlike an offset, a page does not shift when earlier items are deleted."""
        self._check_open()
        if after_row < 0 or limit < 0:
            raise ValueError("after_row and limit must be >= 0")
        return self._db.items_after(after_row, limit, kind)

    def row_of(self, item_id: str) -> int | None:
        """The item's row (what ``items_after`` pages by), or None."""
        self._check_open()
        return self._db.row_of(item_id)

    def stale_items(self, limit: int | None = None) -> list[ItemRecord]:
        """Items stored by another model version: never searched, waiting for reindex."""
        self._check_open()
        return self._db.items_not_of_version(self.model_version, limit)

    def search(
        self,
        query: npt.ArrayLike,
        target: Modality,
        k: int = 10,
        exclude_item: str | None = None,
        item_filter: ItemFilter | None = None,
    ) -> list[SearchHit]:
        """The ``k`` items whose ``target`` windows best match ``query`` — (dim,) or (n, dim)
        window vectors of this store's model — one hit per item, best first; only items that
        ``item_filter`` lets through."""
        self._check_open()
        if target not in MODALITIES:
            raise ValueError(f"target must be one of {MODALITIES}, got {target!r}")
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        queries = unit_rows(query, self.spec.dim, "query")
        with self._index_lock.reading():
            self._check_open()
            return search_items(
                self._indexes[target], self._db, queries, k, exclude_item, item_filter
            )

    def search_by_item(
        self,
        item_id: str,
        *,
        query_modality: Modality,
        target: Modality,
        k: int = 10,
        at: float | None = None,
        item_filter: ItemFilter | None = None,
    ) -> list[SearchHit]:
        """Search with a stored item's ``query_modality`` windows (all of them, or the one at
        time ``at``), leaving the item itself out: e.g. query_modality="audio",
        target="video" finds the videos whose pictures best match this item's sound."""
        if at is None:
            queries = self.vectors_of(item_id, query_modality).vectors
        else:
            queries = self.vector_of(item_id, query_modality, at)
        return self.search(queries, target, k, exclude_item=item_id, item_filter=item_filter)

    def vectors_of(self, item_id: str, modality: Modality) -> WindowVectors:
        """All of an item's ``modality`` window vectors (unit rows) with their times."""
        self._check_open()
        stored = self._db.windows_of(item_id, modality)
        if stored is None:
            if self._db.get(item_id) is None:
                raise ItemNotFound(item_id)
            raise WindowNotFound(f"item {item_id!r} has no {modality} windows")
        check_model_version(stored.model_version, self.model_version, f"item {item_id!r}")
        return stored.windows

    def vector_of(self, item_id: str, modality: Modality, at: float | None = None) -> FloatArray:
        """The item-level vector (normalised mean of its windows), or with ``at`` the vector
        of the window covering that time (the one centred nearest to it), shape (dim,)."""
        windows = self.vectors_of(item_id, modality)
        if at is None:
            return item_vector(windows.vectors)
        covering = np.flatnonzero((windows.starts <= at) & (at <= windows.ends))
        if not len(covering):
            raise WindowNotFound(f"no {modality} window of item {item_id!r} covers t={at}s")
        centres = (windows.starts[covering] + windows.ends[covering]) / 2
        return np.array(windows.vectors[covering[np.argmin(np.abs(centres - at))]])

    def count(self, modality: Modality) -> int:
        """Searchable window vectors of ``modality`` (this model version)."""
        self._check_open()
        with self._index_lock.reading():
            return self._indexes[modality].live_count

    def stats(self) -> dict[str, Any]:
        """Sizes and state for /metrics."""
        self._check_open()
        with self._index_lock.reading():
            per_modality = {
                m: {**self._indexes[m].stats(), "restored": self.restored[m].how}
                for m in MODALITIES
            }
        items = self._db.count_items()
        current = self._db.count_items(self.model_version)
        return {
            "model_version": self.model_version,
            "index_backend": self._backend.name,
            "index_type": self.spec.index_type,
            "dim": self.spec.dim,
            "items": current,
            "stale_items": items - current,
            "modalities": per_modality,
            "last_snapshot_at": self._last_snapshot_at,
            "changes_since_snapshot": self._changes_since_snapshot,
        }
