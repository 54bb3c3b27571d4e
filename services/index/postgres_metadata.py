"""PostgreSQL: the source of truth for items and their window vectors, shared by processes.

The same contract as ``MetadataDB`` (SQLite), on the tables of ``services.database.tables``
(made by its Alembic migrations). Several API processes may use one database:

- Every write transaction first takes one transaction-scoped advisory lock
  (``WRITE_LOCK``): writers run one at a time across all processes, as SQLite's
  ``BEGIN IMMEDIATE`` makes them on one file. So the store's check-then-insert (the dedup
  rule: one item per content hash and model version; an explicit id holds one content) holds
  across processes; the UNIQUE constraints back it up. Writes are short (vectors are computed
  before the transaction), so the lock is held for milliseconds.
- Window row ids (the index ids) come from an identity sequence, handed out only under that
  lock, so they are committed in increasing order; ``max_row_id`` reads the sequence under
  the lock's shared mode (no writer mid-transaction), so a snapshot's "every row up to N"
  has no hole that a later commit could fill.
- Durability: a commit returns once PostgreSQL has flushed its WAL (``synchronous_commit``
  on, PostgreSQL's default).

Reads use pooled connections; a listing's count and page come from one REPEATABLE READ
snapshot.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.database import tables as t
from services.database.engine import WRITE_LOCK, open_engine
from services.database.url import redacted
from services.index.errors import IndexStoreError
from services.index.metadata import (
    ItemSummary,
    StoredWindows,
    WindowRef,
    in_chunks,
    record_of_row,
)
from services.index.records import (
    MODALITIES,
    FloatArray,
    IdArray,
    ItemKind,
    ItemRecord,
    Modality,
    WindowVectors,
)

_LOCK = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=WRITE_LOCK)
_SHARED_LOCK = text("SELECT pg_advisory_xact_lock_shared(:key)").bindparams(key=WRITE_LOCK)
_ROW_SEQUENCE = text("SELECT last_value, is_called FROM windows_row_id_seq")


def _row_triples(rows: Sequence[Any]) -> list[tuple[int, Modality, str]]:
    return [(int(r[0]), r[1], r[2]) for r in rows]


class PostgresMetadataDB:
    """Items and window vectors in a PostgreSQL database (see the module doc)."""

    shared = True  # replicas, each a store in its own process, write it together

    def __init__(self, url: str, dim: int) -> None:
        self.url = url
        self.dim = dim
        self._engine = open_engine(url)
        with self.write_transaction() as tx:
            tx.execute(
                pg_insert(t.store_meta).on_conflict_do_nothing(),
                [
                    {"key": "store_id", "value": uuid.uuid4().hex},
                    {"key": "dim", "value": str(dim)},
                ],
            )
            meta = {k: v for k, v in tx.execute(select(t.store_meta.c.key, t.store_meta.c.value))}
        if int(meta["dim"]) != dim:
            self._engine.dispose()
            raise IndexStoreError(f"{redacted(url)} holds {meta['dim']}-d vectors, not {dim}-d")
        self.store_id: str = meta["store_id"]

    # -- connections and transactions ---------------------------------------------------

    @contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """One transaction holding the database-wide write lock (ROLLBACK on error)."""
        with self._engine.begin() as conn:
            conn.execute(_LOCK)
            yield conn

    @contextmanager
    def read_transaction(self) -> Iterator[Connection]:
        """Several reads that see one consistent snapshot of the database."""
        with (
            self._engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def _reading(self, conn: Connection | None = None) -> Iterator[Connection]:
        """``conn`` (a caller's transaction), or a pooled connection for one read."""
        if conn is not None:
            yield conn
            return
        with self._engine.connect() as own:
            yield own

    def close(self) -> None:
        self._engine.dispose()

    # -- writes (inside write_transaction) -------------------------------------------------

    def insert_item(
        self,
        tx: Connection,
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
        item is being copied from another database); the new index ids per modality."""
        counts = {m: len(windows[m]) if m in windows else 0 for m in MODALITIES}
        tx.execute(
            insert(t.items).values(
                item_id=item_id,
                kind=kind,
                model_version=model_version,
                content_hash=content_hash,
                duration=duration,
                n_video=counts["video"],
                n_audio=counts["audio"],
                metadata=metadata_json,
                created_at=time.time() if created_at is None else created_at,
                file_name=file_name,
                size_bytes=size_bytes,
            )
        )
        return self._insert_windows(tx, item_id, model_version, windows)

    def _insert_windows(
        self,
        tx: Connection,
        item_id: str,
        model_version: str,
        windows: dict[Modality, WindowVectors],
    ) -> dict[Modality, IdArray]:
        new_ids: dict[Modality, IdArray] = {}
        for modality, wv in windows.items():
            if not len(wv):
                new_ids[modality] = np.zeros(0, dtype=np.int64)
                continue
            vectors = np.ascontiguousarray(wv.vectors, dtype="<f4")
            rows = [
                {
                    "item_id": item_id,
                    "modality": modality,
                    "window": i,
                    "start_s": float(wv.starts[i]),
                    "end_s": float(wv.ends[i]),
                    "model_version": model_version,
                    "vector": vectors[i].tobytes(),
                }
                for i in range(len(wv))
            ]
            ids = tx.execute(
                insert(t.windows).returning(t.windows.c.row_id, sort_by_parameter_order=True),
                rows,
            ).scalars()
            new_ids[modality] = np.array(list(ids), dtype=np.int64)
        return new_ids

    def set_metadata(self, tx: Connection, item_id: str, metadata_json: str) -> bool:
        """Replace an item's metadata inside ``tx``; False when there is no such item."""
        result = tx.execute(
            update(t.items).where(t.items.c.item_id == item_id).values(metadata=metadata_json)
        )
        return result.rowcount > 0

    def delete_item(self, tx: Connection, item_id: str) -> list[tuple[int, Modality, str]] | None:
        """Delete an item and its windows inside ``tx``; its former (row_id, modality,
        model_version) rows, or ``None`` if it did not exist."""
        w = t.windows.c
        rows = tx.execute(
            delete(t.windows)
            .where(w.item_id == item_id)
            .returning(w.row_id, w.modality, w.model_version)
        ).all()
        deleted = tx.execute(delete(t.items).where(t.items.c.item_id == item_id)).rowcount
        if not deleted:
            return None
        return sorted(_row_triples(rows))

    def replace_windows(
        self,
        tx: Connection,
        item_id: str,
        model_version: str,
        windows: dict[Modality, WindowVectors],
    ) -> tuple[list[tuple[int, Modality, str]], dict[Modality, IdArray]]:
        """Swap all of an item's windows for ``windows`` (made by ``model_version``) inside
        ``tx``: (the old rows, the new index ids per modality)."""
        w = t.windows.c
        old = tx.execute(
            delete(t.windows)
            .where(w.item_id == item_id)
            .returning(w.row_id, w.modality, w.model_version)
        ).all()
        tx.execute(
            update(t.items)
            .where(t.items.c.item_id == item_id)
            .values(
                model_version=model_version,
                n_video=len(windows["video"]) if "video" in windows else 0,
                n_audio=len(windows["audio"]) if "audio" in windows else 0,
            )
        )
        new_ids = self._insert_windows(tx, item_id, model_version, windows)
        return sorted(_row_triples(old)), new_ids

    def set_meta(self, key: str, value: str) -> None:
        """Record a store-wide setting (e.g. how a backend built its index)."""
        stmt = pg_insert(t.store_meta).values(key=key, value=value)
        with self.write_transaction() as tx:
            tx.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t.store_meta.c.key], set_={"value": stmt.excluded.value}
                )
            )

    # -- reads ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._reading() as c:
            found = c.execute(
                select(t.store_meta.c.value).where(t.store_meta.c.key == key)
            ).scalar()
        return None if found is None else str(found)

    def get(self, item_id: str, conn: Connection | None = None) -> ItemRecord | None:
        with self._reading(conn) as c:
            found = c.execute(select(*t.ITEM_COLUMNS).where(t.items.c.item_id == item_id)).first()
        return record_of_row(tuple(found)) if found else None

    def find_by_content(
        self, content_hash: str, model_version: str, conn: Connection | None = None
    ) -> ItemRecord | None:
        i = t.items.c
        with self._reading(conn) as c:
            found = c.execute(
                select(*t.ITEM_COLUMNS).where(
                    i.content_hash == content_hash, i.model_version == model_version
                )
            ).first()
        return record_of_row(tuple(found)) if found else None

    def list_items(
        self, offset: int, limit: int, kind: ItemKind | None, model_version: str | None
    ) -> tuple[list[ItemRecord], int]:
        i = t.items.c
        where = and_(
            True,
            *([i.kind == kind] if kind is not None else []),
            *([i.model_version == model_version] if model_version is not None else []),
        )
        with self.read_transaction() as c:
            total = int(
                c.execute(select(func.count()).select_from(t.items).where(where)).scalar_one()
            )
            rows = c.execute(
                select(*t.ITEM_COLUMNS).where(where).order_by(i.seq).limit(limit).offset(offset)
            ).all()
        return [record_of_row(tuple(r)) for r in rows], total

    def row_of(self, item_id: str) -> int | None:
        with self._reading() as c:
            found = c.execute(select(t.items.c.seq).where(t.items.c.item_id == item_id)).scalar()
        return None if found is None else int(found)

    def items_after(
        self, after_row: int, limit: int, kind: ItemKind | None
    ) -> tuple[list[ItemRecord], int, int | None]:
        """Up to ``limit`` items whose row comes after ``after_row`` (oldest first), the total
        count, and the row of the page's last item when more follow (else None)."""
        i = t.items.c
        of_kind = and_(True, *([i.kind == kind] if kind is not None else []))
        with self.read_transaction() as c:
            total = int(
                c.execute(select(func.count()).select_from(t.items).where(of_kind)).scalar_one()
            )
            rows = c.execute(
                select(i.seq, *t.ITEM_COLUMNS)
                .where(i.seq > after_row, of_kind)
                .order_by(i.seq)
                .limit(limit + 1)
            ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_row = int(rows[-1][0]) if more and rows else None
        return [record_of_row(tuple(r)[1:]) for r in rows], total, next_row

    def items_not_of_version(self, model_version: str, limit: int | None) -> list[ItemRecord]:
        i = t.items.c
        query = select(*t.ITEM_COLUMNS).where(i.model_version != model_version).order_by(i.seq)
        with self._reading() as c:
            rows = c.execute(query if limit is None else query.limit(limit)).all()
        return [record_of_row(tuple(r)) for r in rows]

    def holds_content(self, content_hash: str) -> bool:
        """Whether an item of any model version holds ``content_hash``."""
        with self._reading() as c:
            found = c.execute(
                select(1).where(t.items.c.content_hash == content_hash).limit(1)
            ).first()
        return found is not None

    def count_items(self, model_version: str | None = None) -> int:
        query = select(func.count()).select_from(t.items)
        if model_version is not None:
            query = query.where(t.items.c.model_version == model_version)
        with self._reading() as c:
            return int(c.execute(query).scalar_one())

    def windows_of(self, item_id: str, modality: Modality) -> StoredWindows | None:
        w = t.windows.c
        with self._reading() as c:
            rows = c.execute(
                select(w.row_id, w.start_s, w.end_s, w.model_version, w.vector)
                .where(w.item_id == item_id, w.modality == modality)
                .order_by(w.window)
            ).all()
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

    def _vectors(self, rows: Sequence[Any]) -> tuple[IdArray, FloatArray]:
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
        return ids, vectors.reshape(-1, self.dim).astype(np.float32)

    def vectors_after(
        self, modality: Modality, model_version: str, after_row_id: int, batch: int = 50_000
    ) -> Iterator[tuple[IdArray, FloatArray]]:
        """(ids, vectors) of ``model_version``'s ``modality`` rows with row_id > after_row_id,
        in row order, ``batch`` rows at a time (rebuild and snapshot replay)."""
        w = t.windows.c
        last = after_row_id
        while True:
            with self._reading() as c:
                rows = c.execute(
                    select(w.row_id, w.vector)
                    .where(w.modality == modality, w.model_version == model_version)
                    .where(w.row_id > last)
                    .order_by(w.row_id)
                    .limit(batch)
                ).all()
            if not rows:
                return
            ids, vectors = self._vectors(rows)
            yield ids, vectors
            last = int(ids[-1])

    def vectors_by_ids(self, row_ids: IdArray) -> tuple[IdArray, FloatArray]:
        """(ids, vectors) of the rows among ``row_ids`` that exist, in row order."""
        w = t.windows.c
        found: list[Any] = []
        with self._reading() as c:
            for chunk in in_chunks([int(i) for i in row_ids]):
                found += c.execute(
                    select(w.row_id, w.vector).where(w.row_id.in_(list(chunk)))
                ).all()
        found.sort(key=lambda r: int(r[0]))
        return self._vectors(found)

    def row_ids_up_to(self, modality: Modality, model_version: str, max_row_id: int) -> IdArray:
        w = t.windows.c
        with self._reading() as c:
            ids = c.execute(
                select(w.row_id).where(
                    w.modality == modality,
                    w.model_version == model_version,
                    w.row_id <= max_row_id,
                )
            ).scalars()
            return np.fromiter((int(i) for i in ids), dtype=np.int64)

    def max_row_id(self) -> int:
        """The highest row id ever handed out, with no write in flight below it."""
        with self._engine.begin() as c:
            c.execute(_SHARED_LOCK)
            last_value, is_called = c.execute(_ROW_SEQUENCE).one()
        return int(last_value) if is_called else 0

    def count_windows(self, modality: Modality, model_version: str) -> int:
        w = t.windows.c
        with self._reading() as c:
            return int(
                c.execute(
                    select(func.count())
                    .select_from(t.windows)
                    .where(w.modality == modality, w.model_version == model_version)
                ).scalar_one()
            )

    def window_refs(self, row_ids: Sequence[int]) -> dict[int, WindowRef]:
        w = t.windows.c
        out: dict[int, WindowRef] = {}
        with self._reading() as c:
            for chunk in in_chunks([int(i) for i in row_ids]):
                for row_id, item_id, window, start, end in c.execute(
                    select(w.row_id, w.item_id, w.window, w.start_s, w.end_s).where(
                        w.row_id.in_(list(chunk))
                    )
                ):
                    out[int(row_id)] = WindowRef(item_id, int(window), float(start), float(end))
        return out

    def item_summaries(self, item_ids: Sequence[str]) -> dict[str, ItemSummary]:
        i = t.items.c
        out: dict[str, ItemSummary] = {}
        with self._reading() as c:
            for chunk in in_chunks(list(item_ids)):
                for item_id, kind, metadata, file_name, size_bytes in c.execute(
                    select(i.item_id, i.kind, i.metadata, i.file_name, i.size_bytes).where(
                        i.item_id.in_(list(chunk))
                    )
                ):
                    summary = ItemSummary(kind, json.loads(metadata), file_name, size_bytes)
                    out[item_id] = summary
        return out
