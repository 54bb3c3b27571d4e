"""SQLite: the source of truth for items and their window vectors.

One file, WAL journal, ``synchronous=FULL``: a commit fsyncs the WAL, so an item is on disk
(and survives ``kill -9`` or a power cut) by the time the transaction that wrote it returns.
Each window vector is a row of ``windows`` whose INTEGER PRIMARY KEY (AUTOINCREMENT, so never
reused after a delete) is its FAISS id, and which carries the model version it was made
with. Writes go through one connection (the store's writer, under its lock); reads use one
connection per thread, each seeing a consistent WAL snapshot.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.index.errors import IndexStoreError
from services.index.records import (
    MODALITIES,
    FloatArray,
    IdArray,
    ItemKind,
    ItemRecord,
    Modality,
    WindowVectors,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('video', 'audio')),
    model_version TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    duration REAL NOT NULL,
    n_video INTEGER NOT NULL,
    n_audio INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    file_name TEXT,
    size_bytes INTEGER,
    UNIQUE (content_hash, model_version)
);
CREATE INDEX IF NOT EXISTS items_by_version ON items (model_version);
CREATE TABLE IF NOT EXISTS windows (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL REFERENCES items (item_id) ON DELETE CASCADE,
    modality TEXT NOT NULL CHECK (modality IN ('video', 'audio')),
    window INTEGER NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    model_version TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_by_space ON windows (modality, model_version, row_id);
CREATE INDEX IF NOT EXISTS windows_by_item ON windows (item_id, modality, window);
"""

_ITEM_COLUMNS = (
    "item_id, kind, model_version, content_hash, duration, n_video, n_audio, metadata, created_at,"
    " file_name, size_bytes"
)
# Columns added after the first release: (name, SQL type), added to an older file on open.
_ADDED_ITEM_COLUMNS = (("file_name", "TEXT"), ("size_bytes", "INTEGER"))
_SQL_VARS = 900  # stay far below SQLite's bound-parameter limit


@dataclass(frozen=True)
class WindowRef:
    """Where a FAISS id points: an item's window."""

    item_id: str
    window: int
    start: float
    end: float


@dataclass(frozen=True)
class StoredWindows:
    """All windows of one modality of one item, in window order."""

    row_ids: IdArray
    model_version: str
    windows: WindowVectors


@dataclass(frozen=True)
class ItemSummary:
    kind: ItemKind
    metadata: dict[str, Any]
    file_name: str | None = None
    size_bytes: int | None = None


def record_of_row(row: sqlite3.Row | tuple[Any, ...]) -> ItemRecord:
    (item_id, kind, version, content_hash, duration, n_video, n_audio, metadata, created) = row[:9]
    file_name, size_bytes = row[9], row[10]
    return ItemRecord(
        item_id=item_id,
        kind=kind,
        model_version=version,
        content_hash=content_hash,
        duration=float(duration),
        has_video=n_video > 0,
        has_audio=n_audio > 0,
        n_video_windows=int(n_video),
        n_audio_windows=int(n_audio),
        metadata=json.loads(metadata),
        created_at=float(created),
        file_name=file_name,
        size_bytes=None if size_bytes is None else int(size_bytes),
    )


def in_chunks(values: Sequence[Any], size: int = _SQL_VARS) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def stored_dim(path: Path) -> int | None:
    """The vector width an existing SQLite store file was made for (None: not a store)."""
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            row = conn.execute("SELECT value FROM store_meta WHERE key = 'dim'").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


class MetadataDB:
    """Items and window vectors in one SQLite file (see the module doc)."""

    shared = False  # one store (the data directory's lock holder) writes it

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self._writer = self._connect(check_same_thread=False)
        self._writer.executescript(SCHEMA)
        self._add_missing_columns()
        with self.write_transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO store_meta (key, value) VALUES (?, ?)",
                [("store_id", uuid.uuid4().hex), ("dim", str(dim))],
            )
        meta = dict(self._writer.execute("SELECT key, value FROM store_meta").fetchall())
        if int(meta["dim"]) != dim:
            self._writer.close()
            raise IndexStoreError(f"{path} holds {meta['dim']}-d vectors, not {dim}-d")
        self.store_id: str = meta["store_id"]
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _add_missing_columns(self) -> None:
        """Bring a file written before ``_ADDED_ITEM_COLUMNS`` existed up to date (NULLs)."""
        present = {row[1] for row in self._writer.execute("PRAGMA table_info(items)")}
        for name, sql_type in _ADDED_ITEM_COLUMNS:
            if name not in present:
                self._writer.execute(f"ALTER TABLE items ADD COLUMN {name} {sql_type}")

    def _connect(self, *, check_same_thread: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=check_same_thread, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    # -- connections and transactions ---------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def write_transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT on the writer connection (ROLLBACK on error). The
        caller holds the store's writer lock."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read_transaction(self) -> Iterator[sqlite3.Connection]:
        """Several reads that see one consistent snapshot of the database."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._writer.close()

    # -- writes (caller holds the writer lock) -------------------------------------------

    def insert_item(
        self,
        tx: sqlite3.Connection,
        *,
        item_id: str,
        kind: ItemKind,
        model_version: str,
        content_hash: str,
        duration: float,
        metadata_json: str,
        windows: dict[Modality, WindowVectors],
        file_name: str | None = None,
        size_bytes: int | None = None,
        created_at: float | None = None,
    ) -> dict[Modality, IdArray]:
        """Insert an item and its windows inside ``tx`` (``created_at``: now, unless an
        item is being copied from another database); the new FAISS ids per modality."""
        counts = {m: len(windows[m]) if m in windows else 0 for m in MODALITIES}
        tx.execute(
            f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                item_id,
                kind,
                model_version,
                content_hash,
                duration,
                counts["video"],
                counts["audio"],
                metadata_json,
                time.time() if created_at is None else created_at,
                file_name,
                size_bytes,
            ),
        )
        return self._insert_windows(tx, item_id, model_version, windows)

    def _insert_windows(
        self,
        tx: sqlite3.Connection,
        item_id: str,
        model_version: str,
        windows: dict[Modality, WindowVectors],
    ) -> dict[Modality, IdArray]:
        new_ids: dict[Modality, IdArray] = {}
        for modality, wv in windows.items():
            vectors = np.ascontiguousarray(wv.vectors, dtype="<f4")
            tx.executemany(
                "INSERT INTO windows (item_id, modality, window, start_s, end_s, model_version,"
                " vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        item_id,
                        modality,
                        i,
                        float(wv.starts[i]),
                        float(wv.ends[i]),
                        model_version,
                        vectors[i].tobytes(),
                    )
                    for i in range(len(wv))
                ),
            )
            rows = tx.execute(
                "SELECT row_id FROM windows WHERE item_id = ? AND modality = ? ORDER BY window",
                (item_id, modality),
            ).fetchall()
            new_ids[modality] = np.array([r[0] for r in rows], dtype=np.int64)
        return new_ids

    def set_metadata(self, tx: sqlite3.Connection, item_id: str, metadata_json: str) -> bool:
        """Replace an item's metadata inside ``tx``; False when there is no such item."""
        cursor = tx.execute(
            "UPDATE items SET metadata = ? WHERE item_id = ?", (metadata_json, item_id)
        )
        return cursor.rowcount > 0

    def delete_item(
        self, tx: sqlite3.Connection, item_id: str
    ) -> list[tuple[int, Modality, str]] | None:
        """Delete an item and its windows inside ``tx``; its former (row_id, modality,
        model_version) rows, or ``None`` if it did not exist."""
        rows = tx.execute(
            "SELECT row_id, modality, model_version FROM windows WHERE item_id = ?", (item_id,)
        ).fetchall()
        tx.execute("DELETE FROM windows WHERE item_id = ?", (item_id,))
        deleted = tx.execute("DELETE FROM items WHERE item_id = ?", (item_id,)).rowcount
        if not deleted:
            return None
        return [(int(r[0]), r[1], r[2]) for r in rows]

    def replace_windows(
        self,
        tx: sqlite3.Connection,
        item_id: str,
        model_version: str,
        windows: dict[Modality, WindowVectors],
    ) -> tuple[list[tuple[int, Modality, str]], dict[Modality, IdArray]]:
        """Swap all of an item's windows for ``windows`` (made by ``model_version``) inside
        ``tx``: (the old rows, the new FAISS ids per modality)."""
        old = tx.execute(
            "SELECT row_id, modality, model_version FROM windows WHERE item_id = ?", (item_id,)
        ).fetchall()
        tx.execute("DELETE FROM windows WHERE item_id = ?", (item_id,))
        tx.execute(
            "UPDATE items SET model_version = ?, n_video = ?, n_audio = ? WHERE item_id = ?",
            (
                model_version,
                len(windows["video"]) if "video" in windows else 0,
                len(windows["audio"]) if "audio" in windows else 0,
                item_id,
            ),
        )
        new_ids = self._insert_windows(tx, item_id, model_version, windows)
        return [(int(r[0]), r[1], r[2]) for r in old], new_ids

    def set_meta(self, key: str, value: str) -> None:
        """Record a store-wide setting (e.g. how a backend built its index)."""
        with self.write_transaction() as tx:
            tx.execute(
                "INSERT INTO store_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- reads ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._reader().execute("SELECT value FROM store_meta WHERE key = ?", (key,))
        found = row.fetchone()
        return None if found is None else str(found[0])

    def get(self, item_id: str, conn: sqlite3.Connection | None = None) -> ItemRecord | None:
        c = conn or self._reader()
        row = c.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = ?", (item_id,))
        found = row.fetchone()
        return record_of_row(found) if found else None

    def find_by_content(
        self, content_hash: str, model_version: str, conn: sqlite3.Connection | None = None
    ) -> ItemRecord | None:
        c = conn or self._reader()
        found = c.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE content_hash = ? AND model_version = ?",
            (content_hash, model_version),
        ).fetchone()
        return record_of_row(found) if found else None

    def list_items(
        self, offset: int, limit: int, kind: ItemKind | None, model_version: str | None
    ) -> tuple[list[ItemRecord], int]:
        where: list[str] = []
        args: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if model_version is not None:
            where.append("model_version = ?")
            args.append(model_version)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.read_transaction() as c:
            total = int(c.execute(f"SELECT COUNT(*) FROM items{clause}", args).fetchone()[0])
            rows = c.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items{clause} ORDER BY rowid LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [record_of_row(r) for r in rows], total

    def row_of(self, item_id: str) -> int | None:
        row = self._reader().execute("SELECT rowid FROM items WHERE item_id = ?", (item_id,))
        found = row.fetchone()
        return int(found[0]) if found else None

    def items_after(
        self, after_row: int, limit: int, kind: ItemKind | None
    ) -> tuple[list[ItemRecord], int, int | None]:
        """Up to ``limit`` items whose row comes after ``after_row`` (oldest first), the total
        count, and the row of the page's last item when more follow (else None)."""
        kind_clause = " AND kind = ?" if kind is not None else ""
        kind_args: list[Any] = [kind] if kind is not None else []
        with self.read_transaction() as c:
            total = int(
                c.execute(f"SELECT COUNT(*) FROM items WHERE 1{kind_clause}", kind_args).fetchone()[
                    0
                ]
            )
            rows = c.execute(
                f"SELECT rowid, {_ITEM_COLUMNS} FROM items WHERE rowid > ?{kind_clause}"
                " ORDER BY rowid LIMIT ?",
                [after_row, *kind_args, limit + 1],
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_row = int(rows[-1][0]) if more and rows else None
        return [record_of_row(r[1:]) for r in rows], total, next_row

    def items_not_of_version(self, model_version: str, limit: int | None) -> list[ItemRecord]:
        rows = self._reader().execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE model_version != ? ORDER BY rowid LIMIT ?",
            (model_version, -1 if limit is None else limit),
        )
        return [record_of_row(r) for r in rows.fetchall()]

    def holds_content(self, content_hash: str) -> bool:
        """Whether an item of any model version holds ``content_hash``."""
        row = (
            self._reader()
            .execute("SELECT 1 FROM items WHERE content_hash = ? LIMIT 1", (content_hash,))
            .fetchone()
        )
        return row is not None

    def count_items(self, model_version: str | None = None) -> int:
        if model_version is None:
            row = self._reader().execute("SELECT COUNT(*) FROM items").fetchone()
        else:
            row = (
                self._reader()
                .execute("SELECT COUNT(*) FROM items WHERE model_version = ?", (model_version,))
                .fetchone()
            )
        return int(row[0])

    def model_versions(self) -> list[str]:
        """Every model version some item is stored with, sorted."""
        rows = self._reader().execute("SELECT DISTINCT model_version FROM items ORDER BY 1")
        return [str(r[0]) for r in rows.fetchall()]

    def windows_of(self, item_id: str, modality: Modality) -> StoredWindows | None:
        rows = (
            self._reader()
            .execute(
                "SELECT row_id, start_s, end_s, model_version, vector FROM windows"
                " WHERE item_id = ? AND modality = ? ORDER BY window",
                (item_id, modality),
            )
            .fetchall()
        )
        if not rows:
            return None
        vectors = np.frombuffer(b"".join(r[4] for r in rows), dtype="<f4").reshape(-1, self.dim)
        return StoredWindows(
            row_ids=np.array([r[0] for r in rows], dtype=np.int64),
            model_version=rows[0][3],
            windows=WindowVectors(
                vectors=vectors.astype(np.float32),
                starts=np.array([r[1] for r in rows], dtype=np.float64),
                ends=np.array([r[2] for r in rows], dtype=np.float64),
            ),
        )

    def vectors_after(
        self, modality: Modality, model_version: str, after_row_id: int, batch: int = 50_000
    ) -> Iterator[tuple[IdArray, FloatArray]]:
        """(ids, vectors) of ``model_version``'s ``modality`` rows with row_id > after_row_id,
        in row order, ``batch`` rows at a time (rebuild and snapshot replay)."""
        last = after_row_id
        conn = self._reader()
        while True:
            rows = conn.execute(
                "SELECT row_id, vector FROM windows WHERE modality = ? AND model_version = ?"
                " AND row_id > ? ORDER BY row_id LIMIT ?",
                (modality, model_version, last, batch),
            ).fetchall()
            if not rows:
                return
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            yield ids, vectors.reshape(-1, self.dim).astype(np.float32)
            last = int(ids[-1])

    def vectors_by_ids(self, row_ids: IdArray) -> tuple[IdArray, FloatArray]:
        """(ids, vectors) of the rows among ``row_ids`` that exist, in row order."""
        conn = self._reader()
        found: list[tuple[int, bytes]] = []
        for chunk in in_chunks([int(i) for i in row_ids]):
            marks = ",".join("?" * len(chunk))
            found += conn.execute(
                f"SELECT row_id, vector FROM windows WHERE row_id IN ({marks})", list(chunk)
            ).fetchall()
        found.sort()
        ids = np.array([r[0] for r in found], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r[1] for r in found), dtype="<f4")
        return ids, vectors.reshape(-1, self.dim).astype(np.float32)

    def row_ids_up_to(self, modality: Modality, model_version: str, max_row_id: int) -> IdArray:
        rows = self._reader().execute(
            "SELECT row_id FROM windows WHERE modality = ? AND model_version = ? AND row_id <= ?",
            (modality, model_version, max_row_id),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def max_row_id(self) -> int:
        """The highest row id ever handed out (AUTOINCREMENT keeps it across deletes)."""
        row = (
            self._reader()
            .execute("SELECT seq FROM sqlite_sequence WHERE name = 'windows'")
            .fetchone()
        )
        return int(row[0]) if row else 0

    def count_windows(self, modality: Modality, model_version: str) -> int:
        row = (
            self._reader()
            .execute(
                "SELECT COUNT(*) FROM windows WHERE modality = ? AND model_version = ?",
                (modality, model_version),
            )
            .fetchone()
        )
        return int(row[0])

    def window_refs(self, row_ids: Sequence[int]) -> dict[int, WindowRef]:
        out: dict[int, WindowRef] = {}
        conn = self._reader()
        for chunk in in_chunks(list(row_ids)):
            marks = ",".join("?" * len(chunk))
            for row_id, item_id, window, start, end in conn.execute(
                f"SELECT row_id, item_id, window, start_s, end_s FROM windows"
                f" WHERE row_id IN ({marks})",
                list(chunk),
            ):
                out[int(row_id)] = WindowRef(item_id, int(window), float(start), float(end))
        return out

    def item_summaries(self, item_ids: Sequence[str]) -> dict[str, ItemSummary]:
        out: dict[str, ItemSummary] = {}
        conn = self._reader()
        for chunk in in_chunks(list(item_ids)):
            marks = ",".join("?" * len(chunk))
            for item_id, kind, metadata, file_name, size_bytes in conn.execute(
                "SELECT item_id, kind, metadata, file_name, size_bytes FROM items"
                f" WHERE item_id IN ({marks})",
                list(chunk),
            ):
                out[item_id] = ItemSummary(kind, json.loads(metadata), file_name, size_bytes)
        return out
