"""``ItemDatabase``: the contract of the store's source of truth for items and window
vectors, and ``open_item_database``, which picks its implementation.

``MetadataDB`` (``metadata``: one SQLite file in the data directory, the default) and
``PostgresMetadataDB`` (``postgres_metadata``: a PostgreSQL database that several processes
may share, ``AVID_DATABASE_URL``) keep it alike: a write transaction is one atomic unit and
only one runs at a time, across processes too; window row ids (the index ids) only grow.
``tx`` / ``conn`` are the implementation's own connection objects, passed through opaquely.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from services.index.metadata import ItemSummary, MetadataDB, StoredWindows, WindowRef
from services.index.records import (
    FloatArray,
    IdArray,
    ItemKind,
    ItemRecord,
    Modality,
    WindowVectors,
)

SQLITE_FILE = "items.sqlite3"  # the default database, inside the store's directory


class ItemDatabase(Protocol):
    store_id: str
    dim: int
    # Whether stores in other processes may write it at the same time (PostgreSQL), so
    # rows can appear in the vector index that this process has not read yet.
    shared: bool

    def write_transaction(self) -> AbstractContextManager[Any]: ...

    def close(self) -> None: ...

    def insert_item(
        self,
        tx: Any,
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
    ) -> dict[Modality, IdArray]: ...

    def set_metadata(self, tx: Any, item_id: str, metadata_json: str) -> bool: ...

    def delete_item(self, tx: Any, item_id: str) -> list[tuple[int, Modality, str]] | None: ...

    def replace_windows(
        self,
        tx: Any,
        item_id: str,
        model_version: str,
        windows: dict[Modality, WindowVectors],
    ) -> tuple[list[tuple[int, Modality, str]], dict[Modality, IdArray]]: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def get_meta(self, key: str) -> str | None: ...

    def get(self, item_id: str, conn: Any = None) -> ItemRecord | None: ...

    def find_by_content(
        self, content_hash: str, model_version: str, conn: Any = None
    ) -> ItemRecord | None: ...

    def list_items(
        self, offset: int, limit: int, kind: ItemKind | None, model_version: str | None
    ) -> tuple[list[ItemRecord], int]: ...

    def row_of(self, item_id: str) -> int | None: ...

    def items_after(
        self, after_row: int, limit: int, kind: ItemKind | None
    ) -> tuple[list[ItemRecord], int, int | None]: ...

    def items_not_of_version(self, model_version: str, limit: int | None) -> list[ItemRecord]: ...

    def holds_content(self, content_hash: str) -> bool: ...

    def count_items(self, model_version: str | None = None) -> int: ...

    def windows_of(self, item_id: str, modality: Modality) -> StoredWindows | None: ...

    def vectors_after(
        self, modality: Modality, model_version: str, after_row_id: int, batch: int = 50_000
    ) -> Iterator[tuple[IdArray, FloatArray]]: ...

    def vectors_by_ids(self, row_ids: IdArray) -> tuple[IdArray, FloatArray]: ...

    def row_ids_up_to(self, modality: Modality, model_version: str, max_row_id: int) -> IdArray: ...

    def max_row_id(self) -> int: ...

    def count_windows(self, modality: Modality, model_version: str) -> int: ...

    def window_refs(self, row_ids: Sequence[int]) -> dict[int, WindowRef]: ...

    def item_summaries(self, item_ids: Sequence[str]) -> dict[str, ItemSummary]: ...


def open_item_database(directory: Path, dim: int, database_url: str | None) -> ItemDatabase:
    """SQLite in ``directory`` (``database_url`` None), else the PostgreSQL database there."""
    if database_url is None:
        return MetadataDB(directory / SQLITE_FILE, dim)
    from services.index.postgres_metadata import PostgresMetadataDB

    return PostgresMetadataDB(database_url, dim)
